/** Rate limiting per client (token when present, else address; health checks exempt; off-switchable) and the query allowance. */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codes, startTestService, type TestService } from '../support/service.js';

const Q = '{ products(first: 1) { totalCount } }';
let t: TestService;
beforeAll(async () => {
  t = await startTestService({ RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' });
}, 60_000);
afterAll(() => t?.stop());

describe('rate limiting', () => {
  it('answers RATE_LIMITED (429, Retry-After) in GraphQL-shaped JSON past the limit, per client', async () => {
    for (let i = 0; i < 3; i++) expect((await t.gql(Q)).errors).toBeUndefined();
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: Q }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await res.json()) as { errors: Array<{ message: string; extensions: { code: string } }> };
    expect(codes({ ...body, status: res.status })).toEqual(['RATE_LIMITED']);
    // The admin token has its own bucket; a made-up token does not buy a fresh one.
    expect((await t.gql(Q, {}, { admin: true })).errors).toBeUndefined();
    expect((await t.gql(Q, {}, { headers: { authorization: 'Bearer made-up-token-000000000' } })).status).toBe(429);
  });

  it('exempts /healthz and /readyz', async () => {
    for (let i = 0; i < 6; i++) {
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    }
  });

  it('is off with RATE_LIMIT_ENABLED=false', async () => {
    const off = await startTestService({ RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_MAX: '1' });
    try {
      for (let i = 0; i < 4; i++) expect((await off.gql(Q)).status).toBe(200);
    } finally {
      await off.stop();
    }
  });
});

/** products(first: n) costs 1 + n allowance points; no embedding model needed. */
const page = (n: number) => `{ products(first: ${n}) { totalCount } }`;

async function post(url: string, body: string, headers: Record<string, string> = {}) {
  const started = performance.now();
  const res = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const json = (await res.json()) as { errors?: Array<{ extensions?: { code?: string; retryAfterSeconds?: number } }> };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), json, heldMs: performance.now() - started };
}

describe('the query allowance (cost per client and window)', () => {
  let a: TestService;
  beforeAll(async () => {
    // TRUST_PROXY: the client is its address (no X-Forwarded-For is sent, so the socket's), whichever of its
    // pooled connections fetch uses; connections are a later test's.
    a = await startTestService({
      TRUST_PROXY: '127.0.0.1',
      RATE_LIMIT_POINTS: '100',
      RATE_LIMIT_WINDOW_MS: '60000',
      RATE_LIMIT_TARPIT_MS: '0',
    });
  }, 60_000);
  afterAll(() => a?.stop());

  it('charges 1 + Σfirst per operation, then refuses with RATE_LIMITED before reading the body', async () => {
    expect((await a.gql(page(40))).errors).toBeUndefined(); // 41 points
    expect((await a.gql(page(40))).errors).toBeUndefined(); // 82
    const over = await a.gql(page(40)); // 123 > 100: refused at the charge
    expect(over.status).toBe(429);
    expect(codes(over)).toEqual(['RATE_LIMITED']);
    // Spent: the next request is refused by a lookup, before its body is parsed (it is not even JSON).
    const early = await post(a.url, '{ not json');
    expect(early.status).toBe(429);
    expect(early.json.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(Number(early.retryAfter)).toBeGreaterThan(0);
    // The admin token has an allowance of its own.
    expect((await a.gql(page(40), {}, { admin: true })).errors).toBeUndefined();
  });

  it('charges a refused operation the refusal penalty', async () => {
    const b = await startTestService({
      TRUST_PROXY: '127.0.0.1',
      RATE_LIMIT_POINTS: '2500',
      RATE_LIMIT_REFUSAL_PENALTY: '1000',
      RATE_LIMIT_TARPIT_MS: '0',
      BUDGET_PAGE_FIRST: '50',
    });
    try {
      // Three operations over the page budget: each refused (BUDGET_EXCEEDED), each charged 1 000.
      for (let i = 0; i < 3; i++) expect(codes(await b.gql(page(60)))).toEqual(['BUDGET_EXCEEDED']);
      // 3 000 > 2 500: even the smallest operation is refused now.
      expect(codes(await b.gql(page(1)))).toEqual(['RATE_LIMITED']);
    } finally {
      await b.stop();
    }
  });

  it('holds refusals (an oversized operation, a 429) for RATE_LIMIT_TARPIT_MS before sending them (a closed loop cannot resend at once)', async () => {
    const c = await startTestService({ TRUST_PROXY: '127.0.0.1', RATE_LIMIT_POINTS: '5', RATE_LIMIT_TARPIT_MS: '600' });
    try {
      // An operation refused for its size is held too (and its penalty spends the allowance)...
      const twoPages = '{ a: products(first: 300) { totalCount } b: products(first: 300) { totalCount } }'; // Σfirst 600 > 500
      const oversized = await post(c.url, JSON.stringify({ query: twoPages }));
      expect(oversized.json.errors?.[0]?.extensions?.code).toBe('BUDGET_EXCEEDED');
      expect(oversized.heldMs).toBeGreaterThanOrEqual(550);
      // ... and so is the 429 that follows.
      const held = await post(c.url, JSON.stringify({ query: page(1) }));
      expect(held.status).toBe(429);
      expect(held.heldMs).toBeGreaterThanOrEqual(550);
    } finally {
      await c.stop();
    }
  });

  it('charges each connection its own allowance, and the heavy operations of all of an address the larger one', async () => {
    // heavy: Σk + Σfirst over ADMISSION_HEAVY_K (100), i.e. a cost over 101.
    const c = await startTestService({ RATE_LIMIT_POINTS: '300', RATE_LIMIT_ADDRESS_POINTS: '700', RATE_LIMIT_TARPIT_MS: '0' });
    // Three keep-alive connections from the one loopback address.
    const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const send = (agent: http.Agent, n: number) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({ query: page(n) });
        const target = new URL(`${c.url}/graphql`);
        const req = http.request(
          {
            agent,
            host: target.hostname,
            port: target.port,
            path: target.pathname,
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    try {
      const [one, two, three] = agents as [http.Agent, http.Agent, http.Agent];
      expect(await send(one, 250)).toBe(200); // connection 1: 251 of 300; address: 251 of 700
      expect(await send(one, 250)).toBe(429); // connection 1 spent (502); address 502
      // Another connection from the same address is not refused for the first one's spending.
      expect(await send(two, 150)).toBe(200); // address: 653 of 700
      // The address's allowance covers the heavy operations of all its connections: a third, fresh one is
      // refused a heavy operation once it is spent, but not a small one.
      expect(await send(three, 150)).toBe(429); // 804 > 700
      expect(await send(three, 5)).toBe(200);
    } finally {
      for (const a of agents) a.destroy();
      await c.stop();
    }
  });

  it('tells clients behind a trusted proxy apart by X-Forwarded-For, and only then', async () => {
    // Heavy operations (first: 150), so that the address's allowance applies whichever connection fetch uses.
    const proxied = await startTestService({ RATE_LIMIT_POINTS: '200', RATE_LIMIT_TARPIT_MS: '0', TRUST_PROXY: '127.0.0.1' });
    const direct = await startTestService({ RATE_LIMIT_POINTS: '200', RATE_LIMIT_ADDRESS_POINTS: '200', RATE_LIMIT_TARPIT_MS: '0' });
    try {
      // Documentation addresses (RFC 5737) in a header only: nothing connects to them.
      const shopperA = { 'x-forwarded-for': '203.0.113.5' };
      const shopperB = { 'x-forwarded-for': '203.0.113.6' };
      for (const t of [proxied, direct]) {
        expect((await t.gql(page(150), {}, { headers: shopperA })).status).toBe(200);
        expect((await t.gql(page(150), {}, { headers: shopperA })).status).toBe(429);
      }
      // Behind the trusted proxy, shopper B has an allowance of its own; without TRUST_PROXY the header is
      // ignored and both shoppers are the proxy's one address.
      expect((await proxied.gql(page(150), {}, { headers: shopperB })).status).toBe(200);
      expect((await direct.gql(page(150), {}, { headers: shopperB })).status).toBe(429);
    } finally {
      await proxied.stop();
      await direct.stop();
    }
  });
});
