/**
 * SSRF-safe image fetching, against HTTP servers on 127.0.0.1 only.
 *
 * Host names are served by an injected resolver (`images.test` -> 127.0.0.1, `evil.test` -> 10.0.0.1, …), so
 * "a name that resolves to a private address" is tested without any DNS. Every URL that points elsewhere
 * than loopback must be refused before connecting; a tripwire on net.Socket#connect blocks and records any
 * connection to a non-loopback address, and every test asserts there was none.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { AppError } from '../../../src/errors.js';
import { fetchImage, fetchImageDetailed, type FetchImageOptions } from '../../../src/images/fetch.js';
import { installLoopbackTripwire, type Tripwire } from './loopback-tripwire.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let server: http.Server;
let port: number;
let png: Buffer;
let tripwire: Tripwire;
const routes = new Map<string, Handler>();
const hits: string[] = [];

const FAKE_DNS: Record<string, string[]> = {
  'images.test': ['127.0.0.1'],
  'other.test': ['127.0.0.1'],
  'evil.test': ['10.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['127.0.0.1', '10.0.0.7'],
  'mapped.test': ['::ffff:127.0.0.1'],
};
const dnsCalls: string[] = [];

async function fakeLookup(hostname: string): Promise<LookupAddress[]> {
  dnsCalls.push(hostname);
  const addrs = FAKE_DNS[hostname];
  if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
  return addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
}

const base = (): FetchImageOptions => ({
  maxBytes: 1_000_000,
  connectTimeoutMs: 1_000,
  totalTimeoutMs: 3_000,
  maxRedirects: 3,
  allowedPrivateHosts: ['images.test', 'other.test'],
  lookup: fakeLookup,
});
const url = (path: string, host = 'images.test') => `http://${host}:${port}${path}`;

/** Runs `p`, expects an AppError; returns it. */
async function appError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected the fetch to fail');
}

function route(path: string, h: Handler) {
  routes.set(path, h);
}
const redirect =
  (to: string, status = 302): Handler =>
  (_req, res) => {
    res.writeHead(status, { location: to });
    res.end();
  };

beforeAll(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
    .png()
    .toBuffer();
  server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    hits.push(path);
    const h = routes.get(path);
    if (h) h(req, res);
    else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;

  route('/img.png', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
    res.end(png);
  });
  route('/img-no-type', (_req, res) => res.end(png)); // chunked, no content-type: bytes decide
  for (let i = 1; i <= 4; i++) route(`/r${i}`, redirect(i === 4 ? '/img.png' : `/r${i + 1}`));
  route('/to-other-host', redirect(`http://other.test:${port}/img.png`));
  route('/loop', redirect('/loop', 301));
  route('/to-private', redirect('http://10.0.0.1/img.png'));
  route('/to-metadata', redirect('http://169.254.169.254/latest/meta-data/'));
  route('/to-evil-name', redirect('http://evil.test/img.png', 307));
  route('/to-loopback-literal', redirect('/img.png'));
  route('/to-ftp', redirect('ftp://images.test/img.png'));
  route('/to-creds', redirect('http://user:secret@images.test/img.png'));
  route('/no-location', (_req, res) => {
    res.writeHead(302);
    res.end();
  });
  route('/html', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' }); // lies
    res.end('<!doctype html><html><body>hello</body></html>');
  });
  route('/svg', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/svg+xml' });
    res.end('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>');
  });
  route('/empty', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.end();
  });
  route('/hang-headers', () => {
    /* never answers */
  });
  route('/hang-body', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.write(png.subarray(0, 16)); // a real PNG start, then nothing, forever
  });
  route('/drip', (req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' }); // no content-length
    res.write(png);
    const t = setInterval(() => res.write(Buffer.alloc(100, 7)), 5);
    req.socket.on('close', () => clearInterval(t));
  });
  route('/huge-declared', (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(50_000_000) });
    res.write(png); // then stalls: the declared length alone must refuse it
  });
  route('/status-500', (_req, res) => {
    res.writeHead(500);
    res.end('boom');
  });
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('fetchImage', { timeout: 8_000 }, () => {
  // installed per test so that the assertion below covers each test separately
  beforeEach(() => {
    hits.length = 0;
    dnsCalls.length = 0;
    tripwire = installLoopbackTripwire();
  });
  afterEach(() => {
    tripwire.uninstall();
    expect(tripwire.violations).toEqual([]);
    // every connection went to loopback
    expect(tripwire.targets.every((t) => t.startsWith('127.') || t === '::1')).toBe(true);
  });

  describe('happy paths', () => {
    it('fetches a PNG from an allow-listed host name', async () => {
      const got = await fetchImageDetailed(url('/img.png'), base());
      expect(got.data.equals(png)).toBe(true);
      expect(got.type).toBe('png');
      expect(got.redirects).toBe(0);
      expect(tripwire.targets).toEqual(['127.0.0.1']); // the tripwire sees connections made through the pin
    });

    it('decides by magic bytes, not Content-Type (none sent, chunked body)', async () => {
      const got = await fetchImage(url('/img-no-type'), base());
      expect(got.equals(png)).toBe(true);
    });

    it('uses the system resolver by default (localhost from /etc/hosts, allow-listed)', async () => {
      const { lookup: _unused, ...opts } = base();
      const got = await fetchImage(`http://localhost:${port}/img.png`, { ...opts, allowedPrivateHosts: ['LOCALHOST'] });
      expect(got.equals(png)).toBe(true);
    });

    it('follows a redirect chain within the limit (relative Location headers)', async () => {
      const got = await fetchImageDetailed(url('/r2'), base()); // r2 -> r3 -> r4 -> img.png
      expect(got.data.equals(png)).toBe(true);
      expect(got.redirects).toBe(3);
      expect(hits).toEqual(['/r2', '/r3', '/r4', '/img.png']);
    });

    it('re-checks the host on a cross-host redirect (the private-host allow-list covers the first host only)', async () => {
      // other.test is allow-listed too, but only as a host a client names; reached by a redirect it is refused
      const e = await appError(fetchImageDetailed(url('/to-other-host'), base()));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.details).toMatchObject({ reason: 'private_address', host: 'other.test', redirect: 1 });
      expect(dnsCalls).toEqual(['images.test', 'other.test']);
      expect(hits).toEqual(['/to-other-host']);
    });

    it('pins the vetted address: DNS is asked once per hop, never again at connect time', async () => {
      let calls = 0;
      // First answer 127.0.0.1 (vetted), later answers 127.0.0.2 where nothing listens: if the connection
      // re-resolved, it would fail.
      const rebinding = async (_host: string): Promise<LookupAddress[]> => {
        calls++;
        return [{ address: calls === 1 ? '127.0.0.1' : '127.0.0.2', family: 4 }];
      };
      const got = await fetchImage(url('/img.png', 'rebind.test'), {
        ...base(),
        lookup: rebinding,
        allowedPrivateHosts: ['rebind.test'],
      });
      expect(got.equals(png)).toBe(true);
      expect(calls).toBe(1);
    });
  });

  describe('refused URLs (URL_NOT_ALLOWED), never connected to', () => {
    it('refuses loopback literals and loopback names without the allow-list', async () => {
      for (const u of [`http://127.0.0.1:${port}/img.png`, url('/img.png')]) {
        const e = await appError(fetchImage(u, { ...base(), allowedPrivateHosts: [] }));
        expect(e.code).toBe('URL_NOT_ALLOWED');
        expect(e.details?.reason).toBe('private_address');
        expect(e.details?.range).toBe('loopback');
      }
      expect(hits).toEqual([]);
    });

    it('refuses the default resolver answer for localhost without the allow-list', async () => {
      const { lookup: _unused, ...opts } = base();
      const e = await appError(fetchImage(`http://localhost:${port}/img.png`, opts));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.message).toMatch(/localhost.*loopback/);
      expect(hits).toEqual([]);
    });

    it.each([
      ['ftp://images.test/img.png', 'scheme'],
      ['file:///etc/passwd', 'scheme'],
      ['gopher://images.test/', 'scheme'],
      ['data:image/png;base64,iVBORw0KGgo=', 'scheme'],
      ['http://user:secret@images.test/img.png', 'credentials'],
      ['http://user@images.test/img.png', 'credentials'],
      ['not a url', 'invalid_url'],
      ['/relative/path.png', 'invalid_url'],
    ])('refuses %s (%s)', async (u, reason) => {
      const e = await appError(fetchImage(u, base()));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.details?.reason).toBe(reason);
      expect(dnsCalls).toEqual([]);
    });

    it.each([
      ['http://[::ffff:127.0.0.1]/', 'ipv4Mapped'],
      ['http://[::ffff:7f00:1]:80/', 'ipv4Mapped'],
      ['http://[::127.0.0.1]/', 'ipv4Compatible'],
      ['http://2130706433/', 'loopback'], // decimal
      ['http://0177.0.0.1/', 'loopback'], // octal
      ['http://0x7f.0.0.1/', 'loopback'], // hex
      ['http://127.1/', 'loopback'], // short form
      ['http://0/', 'unspecified'],
      ['http://0.0.0.0/', 'unspecified'],
      ['http://[::]/', 'unspecified'],
      ['http://[::1]/', 'loopback'],
      ['http://10.0.0.1/', 'private'],
      ['http://172.16.5.4/', 'private'],
      ['http://192.168.1.1/', 'private'],
      ['http://100.64.0.1/', 'carrierGradeNat'],
      ['http://169.254.169.254/latest/meta-data/', 'cloudMetadata'],
      ['http://[fd00:ec2::254]/', 'cloudMetadata'],
      ['http://[fe80::1]/', 'linkLocal'],
      ['http://[fc00::1]/', 'uniqueLocal'],
      ['http://224.0.0.1/', 'multicast'],
      ['http://255.255.255.255/', 'broadcast'],
      ['http://[2002:7f00:1::]/', '6to4 embedding loopback'],
      ['http://[64:ff9b::a00:1]/', 'nat64 embedding private'],
    ])('refuses the address literal %s (%s)', async (u, range) => {
      const e = await appError(fetchImage(u, base()));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.details).toMatchObject({ reason: 'private_address', range });
    });

    it('refuses a host name that resolves to a private address', async () => {
      const e = await appError(fetchImage('http://evil.test/img.png', base()));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.details).toMatchObject({ reason: 'private_address', host: 'evil.test', range: 'private' });
      // the resolved address is not echoed to the client
      expect(e.message).not.toContain('10.0.0.1');
    });

    it('refuses a host when any one of its addresses is not public', async () => {
      const e = await appError(fetchImage(url('/img.png', 'mixed.test'), { ...base(), allowedPrivateHosts: [] }));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(hits).toEqual([]);
    });

    it('refuses an IPv4-mapped IPv6 DNS answer even for an allow-listed name', async () => {
      const e = await appError(fetchImage(url('/img.png', 'mapped.test'), { ...base(), allowedPrivateHosts: ['mapped.test'] }));
      expect(e.details).toMatchObject({ reason: 'private_address', range: 'ipv4Mapped' });
    });

    it('never allows cloud metadata, even when allow-listed', async () => {
      const opts = { ...base(), allowedPrivateHosts: ['metadata.test', '169.254.169.254'] };
      for (const u of ['http://metadata.test/latest/meta-data/', 'http://169.254.169.254/latest/meta-data/']) {
        const e = await appError(fetchImage(u, opts));
        expect(e.details).toMatchObject({ reason: 'private_address', range: 'cloudMetadata' });
      }
    });
  });

  describe('redirects', () => {
    it('refuses a redirect to a private address literal, before connecting', async () => {
      const e = await appError(fetchImage(url('/to-private'), base()));
      expect(e.code).toBe('URL_NOT_ALLOWED');
      expect(e.details).toMatchObject({ reason: 'private_address', range: 'private', redirect: 1 });
      expect(e.message).toMatch(/redirected/);
      expect(hits).toEqual(['/to-private']);
    });

    it('refuses a redirect to the cloud metadata endpoint', async () => {
      const e = await appError(fetchImage(url('/to-metadata'), base()));
      expect(e.details).toMatchObject({ reason: 'private_address', range: 'cloudMetadata', redirect: 1 });
    });

    it('refuses a redirect to a name that resolves to a private address', async () => {
      const e = await appError(fetchImage(url('/to-evil-name'), base()));
      expect(e.details).toMatchObject({ reason: 'private_address', host: 'evil.test', redirect: 1 });
    });

    it('refuses a redirect to another scheme or to a URL with credentials', async () => {
      expect((await appError(fetchImage(url('/to-ftp'), base()))).details).toMatchObject({ reason: 'scheme', redirect: 1 });
      expect((await appError(fetchImage(url('/to-creds'), base()))).details).toMatchObject({
        reason: 'credentials',
        redirect: 1,
      });
    });

    it('fails after too many redirects', async () => {
      const e = await appError(fetchImage(url('/r1'), { ...base(), maxRedirects: 2 }));
      expect(e.code).toBe('IMAGE_FETCH_FAILED');
      expect(e.details).toMatchObject({ reason: 'too_many_redirects', maxRedirects: 2 });
      expect(hits).toEqual(['/r1', '/r2', '/r3']);
    });

    it('stops a redirect loop', async () => {
      const e = await appError(fetchImage(url('/loop'), base()));
      expect(e.details?.reason).toBe('too_many_redirects');
      expect(hits.length).toBe(4);
    });

    it('with maxRedirects 0 refuses any redirect', async () => {
      const e = await appError(fetchImage(url('/r4'), { ...base(), maxRedirects: 0 }));
      expect(e.details?.reason).toBe('too_many_redirects');
    });

    it('fails on a redirect without Location', async () => {
      const e = await appError(fetchImage(url('/no-location'), base()));
      expect(e.details).toMatchObject({ reason: 'bad_redirect', status: 302 });
    });
  });

  describe('timeouts and size', () => {
    it('gives up on a server that never answers (total timeout)', async () => {
      const t0 = Date.now();
      const e = await appError(fetchImage(url('/hang-headers'), { ...base(), totalTimeoutMs: 300 }));
      expect(e.code).toBe('IMAGE_FETCH_FAILED');
      expect(e.details?.reason).toBe('timeout');
      expect(Date.now() - t0).toBeLessThan(2_000);
    });

    it('gives up on a body that never finishes (total timeout)', async () => {
      const t0 = Date.now();
      const e = await appError(fetchImage(url('/hang-body'), { ...base(), totalTimeoutMs: 300 }));
      expect(e.details?.reason).toBe('timeout');
      expect(e.message).toMatch(/300 ms/);
      expect(Date.now() - t0).toBeLessThan(2_000);
    });

    it('stops a slow-drip body at the byte cap, while streaming', async () => {
      const t0 = Date.now();
      const e = await appError(fetchImage(url('/drip'), { ...base(), maxBytes: 2_000, totalTimeoutMs: 6_000 }));
      expect(e.code).toBe('IMAGE_TOO_LARGE');
      expect(e.details).toMatchObject({ maxBytes: 2_000 });
      expect(Date.now() - t0).toBeLessThan(3_000); // the cap, not the timeout, ended it
    });

    it('refuses a Content-Length over the cap before reading the body', async () => {
      const t0 = Date.now();
      const e = await appError(fetchImage(url('/huge-declared'), { ...base(), maxBytes: 1_000_000, totalTimeoutMs: 6_000 }));
      expect(e.code).toBe('IMAGE_TOO_LARGE');
      expect(e.details).toMatchObject({ contentLength: 50_000_000, maxBytes: 1_000_000 });
      expect(Date.now() - t0).toBeLessThan(2_000);
    });

    it('accepts a body of exactly the cap', async () => {
      const got = await fetchImage(url('/img.png'), { ...base(), maxBytes: png.length });
      expect(got.length).toBe(png.length);
    });

    it('is cancelled by the caller signal', async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const e = await appError(fetchImage(url('/hang-headers'), { ...base(), signal: ac.signal }));
      expect(e.details?.reason).toBe('aborted');
    });
  });

  describe('responses that are not images or not fetched', () => {
    it('refuses non-image bytes whatever the Content-Type says', async () => {
      const e = await appError(fetchImage(url('/html'), base()));
      expect(e.code).toBe('INVALID_IMAGE');
      expect(e.details).toMatchObject({ reason: 'not_an_image', contentType: 'image/png' });
    });

    it('refuses SVG', async () => {
      const e = await appError(fetchImage(url('/svg'), base()));
      expect(e.code).toBe('INVALID_IMAGE');
      expect(e.details?.reason).toBe('svg');
    });

    it('refuses an empty body', async () => {
      const e = await appError(fetchImage(url('/empty'), base()));
      expect(e.code).toBe('INVALID_IMAGE');
      expect(e.details?.reason).toBe('empty');
    });

    it('reports HTTP errors with their status', async () => {
      for (const [path, status] of [
        ['/missing', 404],
        ['/status-500', 500],
      ] as const) {
        const e = await appError(fetchImage(url(path), base()));
        expect(e.code).toBe('IMAGE_FETCH_FAILED');
        expect(e.details).toMatchObject({ reason: 'http_status', status });
      }
    });

    it('reports a host name that does not resolve', async () => {
      const e = await appError(fetchImage('http://nxdomain.test/img.png', base()));
      expect(e.code).toBe('IMAGE_FETCH_FAILED');
      expect(e.details).toMatchObject({ reason: 'dns', host: 'nxdomain.test' });
    });

    it('verifies TLS certificates against the host name while connecting to the pinned address', async () => {
      // A self-signed certificate for images.test (test fixture): the fetch must refuse it, and the TLS
      // handshake must have carried the host name (SNI), not the pinned IP address.
      const fixtures = new URL('../../fixtures/tls/', import.meta.url);
      const keyCert = {
        key: readFileSync(new URL('images.test.key', fixtures)),
        cert: readFileSync(new URL('images.test.crt', fixtures)),
      };
      const serverNames: string[] = [];
      const tlsServer = https.createServer(
        {
          ...keyCert,
          SNICallback: (name, cb) => {
            serverNames.push(name);
            cb(null, tls.createSecureContext(keyCert));
          },
        },
        (_req, res) => res.end(png),
      );
      tlsServer.on('tlsClientError', () => {});
      await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
      try {
        const tlsPort = (tlsServer.address() as AddressInfo).port;
        const e = await appError(fetchImage(`https://images.test:${tlsPort}/img.png`, base()));
        expect(e.code).toBe('IMAGE_FETCH_FAILED');
        expect(e.details?.reason).toBe('tls');
        expect(tripwire.targets).toEqual(['127.0.0.1']);
        expect(serverNames).toEqual(['images.test']);
      } finally {
        tlsServer.closeAllConnections();
        await new Promise<void>((r) => tlsServer.close(() => r()));
      }
    });

    it('reports a refused connection', async () => {
      const closed = http.createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const freePort = (closed.address() as AddressInfo).port;
      await new Promise<void>((r) => closed.close(() => r()));
      const e = await appError(fetchImage(`http://images.test:${freePort}/img.png`, base()));
      expect(e.code).toBe('IMAGE_FETCH_FAILED');
      expect(e.details?.reason).toBe('connection_refused');
    });
  });
});
