/** Rate limiting per client: token when present, else address; health checks exempt; off-switchable. */
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
