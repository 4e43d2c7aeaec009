/**
 * Admission control end to end: the budget refuses the heaviest queries, a full stage answers OVERLOADED
 * (503, Retry-After) at once, the request deadline answers TIMEOUT and aborts the URL fetch, a client that
 * goes away has its fetch aborted, query images are sniffed and held to the search pixel cap, and after all
 * of it a well-behaved client is still served. Real server, real database, real ONNX Runtime (tiny model).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { installLoopbackTripwire } from '../unit/images/loopback-tripwire.js';

const DEADLINE_MS = 3_000;
const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
const BY_ID = `query($id: ID!, $k: Int) { similarProducts(image: { productId: $id }, k: $k) { score product { id } } }`;
const BY_URL = `query($url: String!) { similarProducts(image: { url: $url }, k: 3) { score product { id } } }`;
const BY_B64 = `query($b: String!) { similarProducts(image: { base64: $b }, k: 3) { score product { id } } }`;

let t: TestService;
let slow: http.Server;
let slowUrl: string;
/** Requests the slow image server received, and how many of their connections were closed by the client. */
const seen = { requests: 0, closed: 0 };
let productId = '';

beforeAll(async () => {
  // An image server that never answers: whatever fetches from it holds its fetch slot until aborted.
  slow = http.createServer((req) => {
    seen.requests++;
    req.socket.once('close', () => seen.closed++);
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  slowUrl = `http://localhost:${(slow.address() as AddressInfo).port}/photo.png`;
  t = await startTestService(
    {
      IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS: 'localhost',
      ADMISSION_FETCH_CONCURRENCY: '1',
      ADMISSION_FETCH_QUEUE: '1',
      ADMISSION_MAX_WAIT_MS: '300',
      GRAPHQL_REQUEST_TIMEOUT_MS: String(DEADLINE_MS),
    },
    { model: await tinyModelDir() },
  );
  const catalog = syntheticCatalog(6, 3);
  const products = await Promise.all(
    catalog.map(async (p) => ({
      sku: p.sku,
      title: p.title,
      category: p.category,
      image: { base64: (await renderProductImage(p.shape, p.colour, { size: 96 })).toString('base64') },
    })),
  );
  const res = await t.gql(UPSERT, { p: products }, { admin: true });
  expect(res.errors).toBeUndefined();
  productId = res.data.upsertProducts[0].id;
}, 120_000);
afterAll(async () => {
  await t?.stop();
  slow?.closeAllConnections();
  await new Promise((r) => slow?.close(r));
});

const waitFor = async (cond: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
};

describe('the operation budget', () => {
  const aliases = (n: number, k: string | number) =>
    Array.from(
      { length: n },
      (_, i) => `a${i}: similarProducts(image: { productId: $id }, k: ${k}) { score product { id description attributes } }`,
    ).join(' ');

  it('refuses the heaviest query the API used to accept (30 aliases of k: 1000), all of them, and serves a good client after', async () => {
    const heavy = `query($id: ID!) { ${aliases(30, 1000)} }`;
    const results = await Promise.all(Array.from({ length: 6 }, () => t.gql(heavy, { id: productId })));
    for (const r of results) {
      expect(r.data).toBeUndefined();
      expect(r.status).toBe(400);
      expect(codes(r).length).toBeGreaterThan(0); // graphql-armor's alias limit or the budget
    }
    const good = await t.gql(BY_ID, { id: productId, k: 3 });
    expect(good.errors).toBeUndefined();
    expect(good.data.similarProducts).toHaveLength(3);
  });

  it('caps the number of similarity fields (BUDGET_EXCEEDED), for anonymous callers, more for the admin token', async () => {
    const four = `query($id: ID!) { ${aliases(4, 1)} }`;
    const r = await t.gql(four, { id: productId });
    expect(codes(r)).toEqual(['BUDGET_EXCEEDED']);
    expect(r.status).toBe(400);
    expect(r.errors![0]!.extensions).toMatchObject({ limit: 'similarityFields', requested: 4, max: 3 });
    expect((await t.gql(four, { id: productId }, { admin: true })).errors).toBeUndefined();
  });

  it('caps the sum of k, counting k given as a variable', async () => {
    const literal = await t.gql(`query($id: ID!) { ${aliases(2, 600)} }`, { id: productId });
    expect(codes(literal)).toEqual(['BUDGET_EXCEEDED']);
    const byVariable = await t.gql(`query($id: ID!, $k: Int) { ${aliases(2, '$k')} }`, { id: productId, k: 600 });
    expect(codes(byVariable)).toEqual(['BUDGET_EXCEEDED']);
    expect(byVariable.errors![0]!.extensions).toMatchObject({ limit: 'similarityK', requested: 1200, max: 1000 });
    const within = await t.gql(`query($id: ID!, $k: Int) { ${aliases(2, '$k')} }`, { id: productId, k: 400 });
    expect(within.errors).toBeUndefined();
  });

  it('caps products(first) summed over the operation, as a variable too', async () => {
    const r = await t.gql(`query($n: Int) { a: products(first: $n) { totalCount } b: products(first: $n) { totalCount } }`, { n: 300 });
    expect(codes(r)).toEqual(['BUDGET_EXCEEDED']);
  });
});

describe('abusive clients beside a storefront', () => {
  it('serves every request of a well-behaved client while six others send the heaviest accepted query; theirs are served or refused with stable codes', async () => {
    const heavy = `query($id: ID!) { ${Array.from(
      { length: 3 },
      (_, i) => `a${i}: similarProducts(image: { productId: $id }, k: 333) { score product { id description attributes } }`,
    ).join(' ')} }`;
    let stop = false;
    const abusive: string[] = [];
    const abusers = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const r = await t.gql(heavy, { id: productId });
        abusive.push(...(r.errors ? codes(r).map(String) : ['ok']));
      }
    });
    const good: Array<string | undefined> = [];
    for (let i = 0; i < 30; i++) {
      const r = await t.gql(BY_ID, { id: productId, k: 10 });
      good.push(...(r.errors ? r.errors.map((e) => JSON.stringify(e.extensions)) : ['ok']));
    }
    stop = true;
    await Promise.all(abusers);
    expect(
      good.every((c) => c === 'ok'),
      JSON.stringify(good),
    ).toBe(true);
    expect(abusive.length).toBeGreaterThan(0);
    expect(
      abusive.every((c) => c === 'ok' || c === 'OVERLOADED'),
      JSON.stringify([...new Set(abusive)]),
    ).toBe(true);
  });
});

describe('admission on the expensive paths', () => {
  it('answers OVERLOADED (503, Retry-After) when the fetch stage is full, then TIMEOUT at the deadline, aborting the fetch', async () => {
    const started = Date.now();
    const holder = t.gql(BY_URL, { url: slowUrl }); // takes the only fetch slot and never gets an answer
    expect(await waitFor(() => seen.requests >= 1, 5_000)).toBe(true);
    const queued = t.gql(BY_URL, { url: slowUrl }); // waits for the slot (queue of 1) ...
    await new Promise((r) => setTimeout(r, 50));
    const full = await t.gql(BY_URL, { url: slowUrl }); // ... so this one finds the queue full
    const fullRes = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: BY_URL, variables: { url: slowUrl } }),
    });
    expect(codes(full)).toEqual(['OVERLOADED']);
    expect(full.status).toBe(503);
    expect(fullRes.headers.get('retry-after')).toBe('1');
    await fullRes.text();
    const waited = await queued; // waited ADMISSION_MAX_WAIT_MS for a slot that never came free
    expect(codes(waited)).toEqual(['OVERLOADED']);
    expect(waited.errors![0]!.extensions).toMatchObject({ stage: 'fetch', reason: 'wait_timeout' });

    // Other stages still serve while the fetch stage is full.
    const good = await t.gql(BY_ID, { id: productId, k: 2 });
    expect(good.errors).toBeUndefined();

    const timedOut = await holder;
    expect(codes(timedOut)).toEqual(['TIMEOUT']);
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 10_000); // the deadline plus generous slack
    expect(await waitFor(() => seen.closed >= 1, 5_000)).toBe(true); // the fetch was aborted, not left hanging
  });

  it('aborts the in-flight URL fetch of a client that goes away', async () => {
    const before = { ...seen };
    const controller = new AbortController();
    const pending = fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: BY_URL, variables: { url: slowUrl } }),
      signal: controller.signal,
    }).catch(() => null);
    expect(await waitFor(() => seen.requests > before.requests, 5_000)).toBe(true);
    controller.abort();
    await pending;
    // Closed well before the request deadline would have closed it.
    expect(await waitFor(() => seen.closed > before.closed, DEADLINE_MS - 500)).toBe(true);
    const good = await t.gql(BY_ID, { id: productId, k: 2 });
    expect(good.errors).toBeUndefined();
  });

  it('holds query images to the search pixel cap (lower than ingest), and sniffs them before decoding', async () => {
    const big = await sharp({ create: { width: 4200, height: 4000, channels: 3, background: '#fff' } })
      .png({ compressionLevel: 9 })
      .toBuffer(); // 16.8 MP: under the ingest cap of 40 MP, over the search cap of 16 MP
    const r = await t.gql(BY_B64, { b: big.toString('base64') });
    expect(codes(r)).toEqual(['IMAGE_TOO_LARGE']);
    expect(r.errors![0]!.extensions).toMatchObject({ maxImagePixels: 16_000_000 });
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    const s = await t.gql(BY_B64, { b: svg.toString('base64') });
    expect(codes(s)).toEqual(['INVALID_IMAGE']);
  });

  it(
    'accepts a 24 MP phone JPEG over the search pixel cap (decoded shrunk on load), and finds its product (issue 23)',
    { timeout: 120_000 },
    async () => {
      // the first product's photo, as a phone would take it: 5712×4284 (a recent iPhone's 24 MP default), with sensor noise
      const [W, H] = [5712, 4284];
      const first = syntheticCatalog(6, 3)[0]!;
      const raw = await sharp(await renderProductImage(first.shape, first.colour, { size: 96 }))
        .resize(W, H, { fit: 'fill' })
        .removeAlpha()
        .raw()
        .toBuffer();
      let seed = 23;
      for (let i = 0; i < raw.length; i++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        raw[i] = Math.max(0, Math.min(255, raw[i]! + (seed >>> 28) - 8));
      }
      const phone = await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer();
      const r = await t.gql(BY_B64, { b: phone.toString('base64') });
      expect(r.errors, JSON.stringify(r.errors)).toBeUndefined();
      expect(r.data.similarProducts[0].product.id).toBe(productId);
      // (a PNG or progressive JPEG of this size stays refused: the 16.8 MP PNG above, and images/decode's unit tests)
    },
  );

  it('refuses a URL that points at a private or metadata address before connecting (under the loopback tripwire)', async () => {
    const tripwire = installLoopbackTripwire();
    try {
      for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/x.png', 'http://[fd00::1]/x.png']) {
        const r = await t.gql(BY_URL, { url });
        expect(codes(r), url).toEqual(['URL_NOT_ALLOWED']);
      }
      expect(tripwire.violations).toEqual([]);
    } finally {
      tripwire.uninstall();
    }
  });
});
