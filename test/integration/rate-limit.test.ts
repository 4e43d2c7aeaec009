/** Rate limiting per client (token when present, else address; health checks exempt; off-switchable) and the query allowance. */
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
    a = await startTestService({ RATE_LIMIT_POINTS: '100', RATE_LIMIT_WINDOW_MS: '60000', RATE_LIMIT_TARPIT_MS: '0' });
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

  it('holds a 429 for RATE_LIMIT_TARPIT_MS before sending it (a closed loop cannot resend at once)', async () => {
    const c = await startTestService({ RATE_LIMIT_POINTS: '5', RATE_LIMIT_TARPIT_MS: '600' });
    try {
      expect((await c.gql(page(10))).status).toBe(429); // 11 > 5
      const held = await post(c.url, JSON.stringify({ query: page(1) }));
      expect(held.status).toBe(429);
      expect(held.heldMs).toBeGreaterThanOrEqual(550);
    } finally {
      await c.stop();
    }
  });

  it('tells clients behind a trusted proxy apart by X-Forwarded-For, and only then', async () => {
    const proxied = await startTestService({ RATE_LIMIT_POINTS: '20', RATE_LIMIT_TARPIT_MS: '0', TRUST_PROXY: '127.0.0.1' });
    const direct = await startTestService({ RATE_LIMIT_POINTS: '20', RATE_LIMIT_TARPIT_MS: '0' });
    try {
      // Documentation addresses (RFC 5737) in a header only: nothing connects to them.
      const shopperA = { 'x-forwarded-for': '203.0.113.5' };
      const shopperB = { 'x-forwarded-for': '203.0.113.6' };
      for (const t of [proxied, direct]) {
        expect((await t.gql(page(15), {}, { headers: shopperA })).status).toBe(200);
        expect((await t.gql(page(15), {}, { headers: shopperA })).status).toBe(429);
      }
      // Behind the trusted proxy, shopper B has an allowance of its own; without TRUST_PROXY the header is
      // ignored and both shoppers are the proxy's one address.
      expect((await proxied.gql(page(15), {}, { headers: shopperB })).status).toBe(200);
      expect((await direct.gql(page(15), {}, { headers: shopperB })).status).toBe(429);
    } finally {
      await proxied.stop();
      await direct.stop();
    }
  });
});
