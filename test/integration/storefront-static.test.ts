/** The storefront's static files: served at / with the right types, nothing outside web/ reachable. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(() => t?.stop());

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${t.url}${path}`, { headers });

describe('storefront static files', () => {
  it('serves the page at / with a content security policy', async () => {
    const res = await get('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).toContain('<script type="module" src="/app.js">');
  });

  it.each([
    ['/app.js', 'text/javascript; charset=utf-8'],
    ['/api.js', 'text/javascript; charset=utf-8'],
    ['/styles.css', 'text/css; charset=utf-8'],
    ['/favicon.svg', 'image/svg+xml'],
  ])('serves %s as %s', async (path, type) => {
    const res = await get(path);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(type);
  });

  it('answers 304 to a matching If-None-Match', async () => {
    const first = await get('/app.js');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const again = await get('/app.js', { 'if-none-match': etag });
    expect(again.status).toBe(304);
  });

  it.each([
    '/index.html/../package.json',
    '/..%2fpackage.json',
    '/%2e%2e/package.json',
    '/web/app.js',
    '/package.json',
    '/.env',
    '/app.js/',
    '/src/main.ts',
  ])('does not serve %s', async (path) => {
    const res = await get(path);
    expect(res.status).toBe(404);
  });

  it('leaves the API routes alone', async () => {
    expect((await get('/healthz')).status).toBe(200);
    const res = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ embeddingModel { id } }' }),
    });
    expect(res.status).toBe(200);
  });
});
