/**
 * The private-host allow-list applies to the host the client named (and redirects staying on it) only: an
 * allowed private host that redirects to another private address, even an allow-listed one, is refused
 * before any connection to it. Servers on 127.0.0.1 only, under the loopback tripwire.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { AppError } from '../../../src/errors.js';
import { fetchImageDetailed, type FetchImageOptions } from '../../../src/images/fetch.js';
import { installLoopbackTripwire, type Tripwire } from './loopback-tripwire.js';

let server: http.Server;
let port: number;
let png: Buffer;
let tripwire: Tripwire;
const hits: string[] = [];

const DNS: Record<string, string> = { 'cdn.internal': '127.0.0.1', 'db.internal': '127.0.0.1', 'evil.test': '10.1.2.3' };
const lookup = async (host: string): Promise<LookupAddress[]> => {
  const a = DNS[host];
  if (!a) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return [{ address: a, family: 4 }];
};
const opts = (): FetchImageOptions => ({
  maxBytes: 100_000,
  connectTimeoutMs: 1_000,
  totalTimeoutMs: 3_000,
  maxRedirects: 3,
  allowedPrivateHosts: ['cdn.internal', 'db.internal', '127.0.0.1'],
  lookup,
});

beforeAll(async () => {
  png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#3c3' } })
    .png()
    .toBuffer();
  server = http.createServer((req, res) => {
    const p = req.url ?? '/';
    hits.push(`${req.headers.host?.split(':')[0]}${p}`);
    const to: Record<string, string> = {
      '/same-host': '/img.png',
      '/to-allowed-name': `http://db.internal:${port}/img.png`,
      '/to-allowed-literal': `http://127.0.0.1:${port}/img.png`,
      '/to-private-name': 'http://evil.test/img.png',
    };
    if (to[p]) return res.writeHead(302, { location: to[p] }).end();
    if (p === '/img.png') return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});
beforeEach(() => {
  hits.length = 0;
  tripwire = installLoopbackTripwire();
});
afterEach(() => {
  tripwire.uninstall();
  expect(tripwire.violations).toEqual([]);
});

async function refused(path: string): Promise<AppError> {
  const e = await fetchImageDetailed(`http://cdn.internal:${port}${path}`, opts()).then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

describe('private-host allow-list and redirects', () => {
  it('an allow-listed host is fetched when named directly, and may redirect on itself', async () => {
    expect((await fetchImageDetailed(`http://db.internal:${port}/img.png`, opts())).data.equals(png)).toBe(true);
    const got = await fetchImageDetailed(`http://cdn.internal:${port}/same-host`, opts());
    expect(got.redirects).toBe(1);
    expect(hits).toEqual(['db.internal/img.png', 'cdn.internal/same-host', 'cdn.internal/img.png']);
  });

  it.each([
    ['/to-allowed-name', 'db.internal'],
    ['/to-allowed-literal', '127.0.0.1'],
    ['/to-private-name', 'evil.test'],
  ])('refuses %s: a redirect from an allowed private host to another private address', async (path, host) => {
    const e = await refused(path);
    expect(e.code).toBe('URL_NOT_ALLOWED');
    expect(e.details).toMatchObject({ reason: 'private_address', host, redirect: 1 });
    expect(hits).toEqual([`cdn.internal${path}`]); // the redirect target was never contacted
  });
});
