/**
 * /metrics scraped after real requests: a product ingested over GraphQL (real ONNX Runtime, tiny model),
 * searched by image and by text, a bad request and an image fetch refused; the counters must have moved
 * with the labels an operator would filter on. Runs on the test database of the run (PostgreSQL or PGlite).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { startTestService, tinyModelDir, type TestService } from '../support/service.js';

let t: TestService;
beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
}, 120_000);
afterAll(() => t?.stop());

async function scrape(url = `${t.url}/metrics`): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

/** The value of one series, matched by its name and a subset of its labels (0 when absent). */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const have = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[2]);
  }
  return sum;
}

describe('/metrics', () => {
  it('counts GraphQL operations, searches, inference batches and HTTP requests with their labels', async () => {
    const before = await scrape();
    const image = await renderProductImage('circle', 'red', { size: 96 });
    const up = await t.gql(
      `mutation Upsert($p: [ProductInput!]!) { upsertProducts(products: $p) { id } }`,
      { p: [{ sku: 'M-1', title: 'Red disc', category: 'toys', price: 5, currency: 'EUR', image: { base64: image.toString('base64') } }] },
      { admin: true },
    );
    expect(up.errors).toBeUndefined();
    const found = await t.gql(`query Similar($i: ImageInput!) { similarProducts(image: $i, k: 3) { score } }`, {
      i: { base64: image.toString('base64') },
    });
    expect(found.errors).toBeUndefined();
    const text = await t.gql(`query ByText { searchProducts(text: "red disc", k: 3) { score } }`);
    expect(text.errors).toBeUndefined();
    const bad = await t.gql(`query BadK { searchProducts(text: "x", k: 100000) { score } }`);
    expect(bad.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    // Refused before any connection: the loopback address is not allowed (nothing is fetched).
    const refused = await t.gql(`query FetchRefused($i: ImageInput!) { similarProducts(image: $i) { score } }`, {
      i: { url: 'http://127.0.0.1:9/x.png' },
    });
    expect(refused.errors?.[0]?.extensions?.code).toBe('URL_NOT_ALLOWED');

    const after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(moved('vps_graphql_operation_duration_seconds_count', { operation: 'Upsert', outcome: 'ok' })).toBe(1);
    expect(moved('vps_graphql_operation_duration_seconds_count', { operation: 'Similar', outcome: 'ok' })).toBe(1);
    // Names that never succeeded are not labels (a client could fill them with junk): "other".
    expect(moved('vps_graphql_operation_duration_seconds_count', { operation: 'other', outcome: 'BAD_USER_INPUT' })).toBe(1);
    expect(moved('vps_graphql_operation_duration_seconds_count', { operation: 'other', outcome: 'URL_NOT_ALLOWED' })).toBe(1);
    expect(moved('vps_search_total', { fallback: 'false' }) + moved('vps_search_total', { fallback: 'true' })).toBe(2);
    expect(moved('vps_http_request_duration_seconds_count', { route: '/graphql', method: 'POST', status: '200' })).toBeGreaterThanOrEqual(
      4,
    );
    expect(moved('vps_http_request_duration_seconds_count', { route: '/metrics', method: 'GET', status: '200' })).toBe(1);
    const model = t.service.services.models.loadedModels()[0]!.id;
    expect(moved('vps_embedding_batch_size_count', { kind: 'image' })).toBeGreaterThanOrEqual(2);
    expect(moved('vps_embedding_batch_size_count', { kind: 'text' })).toBe(1);
    expect(after).toMatch(new RegExp(`vps_embedding_inference_duration_seconds_count\\{model="[^"]*",variant="\\w+",kind="text"\\}`));
    expect(model).toBeTruthy();
    expect(after).toMatch(/^vps_embedding_queue_depth\{model="[^"]+",variant="\w+"\} 0$/m);
    expect(after).toMatch(/^vps_db_pool_connections \d+$/m);
    expect(after).toMatch(/^vps_process_resident_memory_bytes \d+/m);
  });

  it('answers with the request id in a header (a sane client id is kept)', async () => {
    const res = await fetch(`${t.url}/healthz`, { headers: { 'x-request-id': 'abc-123' } });
    expect(res.headers.get('x-request-id')).toBe('abc-123');
    const other = await fetch(`${t.url}/healthz`, { headers: { 'x-request-id': 'not ok\u00e9' } });
    expect(other.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('/metrics settings', () => {
  it('METRICS_PORT serves them on their own listener only; METRICS_ENABLED=false turns them off', async () => {
    const own = await startTestService({ METRICS_PORT: String(20000 + Math.floor(Math.random() * 20000)) });
    try {
      expect((await fetch(`${own.url}/metrics`)).status).toBe(404);
      expect(await scrape(own.service.metricsUrl)).toMatch(/vps_http_request_duration_seconds/);
    } finally {
      await own.stop();
    }
    const off = await startTestService({ METRICS_ENABLED: 'false' });
    try {
      expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
      expect(off.service.metricsUrl).toBeUndefined();
    } finally {
      await off.stop();
    }
  });
});
