/**
 * Issue 21, findings 9–12: the GraphQL edge, over HTTP against the real service (tiny ONNX model, the
 * test database). Each test is the probe's request; the service keeps serving a good query after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';

const N = 12;
const catalog = syntheticCatalog(N, 3);
const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
const SIMILAR_PAGE = `query($image: ImageInput!, $first: Int, $after: String) {
  similarProductsPage(image: $image, first: $first, after: $after) {
    edges { cursor node { score product { id } } } pageInfo { hasNextPage endCursor } } }`;
const SEARCH = `query($text: String!, $category: String, $filter: ProductFilter, $mode: SearchMode, $weights: FusionWeights) {
  searchProducts(text: $text, category: $category, filter: $filter, mode: $mode, weights: $weights, k: 3) { score product { id } } }`;
const GOOD = '{ products(first: 1) { totalCount } }';

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const started = performance.now();
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = (await res.json()) as { errors?: Array<{ message: string; extensions?: { code?: string; reason?: string } }> };
  return { status: res.status, json, codes: (json.errors ?? []).map((e) => e.extensions?.code), heldMs: performance.now() - started };
}

let t: TestService;
let firstId: string;
beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  const products = await Promise.all(
    catalog.map(async (p) => ({
      sku: p.sku,
      title: p.title,
      category: p.category,
      brand: p.brand,
      price: p.price,
      image: { base64: (await renderProductImage(p.shape, p.colour, { size: 64 })).toString('base64') },
    })),
  );
  const res = await t.gql(UPSERT, { p: products }, { admin: true });
  expect(res.errors).toBeUndefined();
  firstId = (res.data.upsertProducts as Array<{ id: string }>)[0]!.id;
}, 180_000);
afterAll(() => t?.stop());

describe('9. page cursors cannot be forged', () => {
  it('a cursor rewritten to o=998 answers INVALID_CURSOR', async () => {
    const res = await t.gql(SIMILAR_PAGE, { image: { productId: firstId }, first: 1 });
    expect(res.errors).toBeUndefined();
    const cursor = res.data.similarProductsPage.pageInfo.endCursor as string;
    // The probe's rewrite: decode the content, set o, encode again (keeping or dropping the signature).
    const [content, signature] = cursor.split('.');
    const state = JSON.parse(Buffer.from(content!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...state, o: 998 })).toString('base64url');
    for (const after of [`${forged}.${signature}`, forged]) {
      const next = await t.gql(SIMILAR_PAGE, { image: { productId: firstId }, first: 1, after });
      expect(codes(next)).toEqual(['INVALID_CURSOR']);
    }
    // The honest cursor still works.
    const honest = await t.gql(SIMILAR_PAGE, { image: { productId: firstId }, first: 1, after: cursor });
    expect(honest.errors).toBeUndefined();
  });
});

describe('10. syntax errors and over-long documents', () => {
  it('answer 400 GRAPHQL_PARSE_FAILED, held in the tarpit and charged the refusal penalty', async () => {
    const c = await startTestService({
      TRUST_PROXY: '127.0.0.1',
      RATE_LIMIT_POINTS: '2500',
      RATE_LIMIT_REFUSAL_PENALTY: '1000',
      RATE_LIMIT_TARPIT_MS: '300',
      GRAPHQL_MAX_TOKENS: '1000',
    });
    try {
      const syntax = await post(c.url, { query: '{ products(' });
      expect(syntax.status).toBe(400);
      expect(syntax.codes).toEqual(['GRAPHQL_PARSE_FAILED']);
      expect(syntax.heldMs).toBeGreaterThanOrEqual(250);
      const long = await post(c.url, { query: `{ ${'__typename '.repeat(1200)} }` });
      expect(long.status).toBe(400);
      expect(long.codes).toEqual(['GRAPHQL_PARSE_FAILED']);
      expect(long.heldMs).toBeGreaterThanOrEqual(250);
      // Two refusals charged 1 000 each, a third: 3 000 > 2 500, so the next good query is refused.
      expect((await post(c.url, { query: '{ products(' })).status).toBe(400);
      expect((await post(c.url, { query: GOOD })).status).toBe(429);
    } finally {
      await c.stop();
    }
  });
});

describe('11. invalid input', () => {
  it('a NUL character in text or category answers BAD_USER_INPUT', async () => {
    expect(codes(await t.gql(SEARCH, { text: 'red\u0000bag', mode: 'KEYWORD' }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(SEARCH, { text: 'red', category: 'ba\u0000gs', mode: 'KEYWORD' }))).toEqual(['BAD_USER_INPUT']);
    // In the document itself, as a GraphQL escape.
    const literal = await t.gql('{ searchProducts(text: "red\\u0000bag", mode: KEYWORD) { score } }');
    expect(codes(literal)).toEqual(['BAD_USER_INPUT']);
    expect((await t.gql(GOOD)).errors).toBeUndefined();
  });

  it('an APQ hash that does not match its query answers 400 with Apollo’s code for it', async () => {
    const res = await post(t.url, {
      query: GOOD,
      extensions: { persistedQuery: { version: 1, sha256Hash: '0'.repeat(64) } },
    });
    expect(res.status).toBe(400);
    expect(res.codes).toEqual(['BAD_REQUEST']);
    expect(res.json.errors?.[0]?.message).toMatch(/does not match/);
  });

  it('weights: { vector: 1e308 } is refused, not turned into scores of 3e306', async () => {
    const res = await t.gql(SEARCH, { text: 'red', mode: 'HYBRID', weights: { vector: 1e308 } });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
  });

  it('each element of filter.categories is bounded', async () => {
    const res = await t.gql(SEARCH, { text: 'red', mode: 'KEYWORD', filter: { categories: ['x'.repeat(200_000)] } });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
  });
});

describe('12. /metrics', () => {
  it('operation names become labels only once an operation of that name succeeded', async () => {
    for (let i = 0; i < 5; i++) await t.gql(`query Junk${i}x { searchProducts(text: "", mode: KEYWORD) { score } }`);
    await t.gql(`query Known { products(first: 1) { totalCount } }`);
    const body = await (await fetch(`${t.url}/metrics`)).text();
    expect(body).not.toMatch(/operation="Junk/);
    expect(body).toMatch(/operation="Known"/);
  });

  it('is not served on the public port in production unless METRICS_TOKEN is given, then only with it', async () => {
    const prod = await startTestService({ NODE_ENV: 'production' });
    try {
      expect((await fetch(`${prod.url}/metrics`)).status).toBe(404);
    } finally {
      await prod.stop();
    }
    const token = 'a-metrics-token-0123456789';
    const guarded = await startTestService({ NODE_ENV: 'production', METRICS_TOKEN: token });
    try {
      expect((await fetch(`${guarded.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${guarded.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });
});
