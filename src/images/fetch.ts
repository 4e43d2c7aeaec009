/**
 * Fetching an image from a URL a client gave us, without letting that URL reach our own network (SSRF).
 *
 * Defences, in order, on every hop of a redirect chain:
 *  1. the URL: absolute, http or https only, no user name or password in it;
 *  2. the host: IP literals (already canonicalised by the WHATWG URL parser, so `2130706433`, `0177.0.0.1`
 *     and `0x7f.1` arrive as `127.0.0.1`) and every address a host name resolves to are classified by
 *     ip-policy.ts; one non-public address refuses the whole host (unless the name is in
 *     `allowedPrivateHosts` and is the host of the URL the client gave, or a redirect on that same host: a
 *     redirect from an allowed host to any other non-public host is refused; cloud metadata and
 *     unspecified/multicast addresses stay refused everywhere);
 *  3. the connection: made to the addresses just checked and to no other. The request goes through an
 *     undici Agent whose DNS lookup only answers with the pinned, vetted addresses, so a second DNS answer
 *     (rebinding) can never be used;
 *  4. redirects are followed by hand, each target going through 1-3 again, up to `maxRedirects`;
 *  5. a connect timeout, and a total timeout that covers DNS, connecting, waiting and reading the body;
 *  6. the byte cap: refused early on a Content-Length over the cap, and counted while streaming (a server
 *     that lies or sends no length is cut off at the first byte over the cap);
 *  7. the bytes must be an accepted raster image by their magic numbers (sniff.ts); Content-Type is ignored.
 *
 * No cookies, credentials or Accept-Encoding are sent; the response is never decompressed.
 * Failures are AppErrors with stable codes: URL_NOT_ALLOWED, IMAGE_FETCH_FAILED (details.reason),
 * IMAGE_TOO_LARGE, INVALID_IMAGE.
 */
import dns from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { Agent, request } from 'undici';
import { AppError, ErrorCode } from '../errors.js';
import { metrics, outcomeOf } from '../metrics/index.js';
import { classifyAddress, describeRange, ipLiteral, normalizeHost } from './ip-policy.js';
import { looksLikeSvgOrXml, sniffImageType, type SniffedType } from './sniff.js';

/** Resolves a host name to all of its addresses (A and AAAA). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export interface FetchImageOptions {
  /** Largest accepted body in bytes. */
  maxBytes: number;
  /** Time allowed to open the TCP (and TLS) connection of each hop. */
  connectTimeoutMs: number;
  /** Time allowed for the whole fetch: every hop's DNS, connection, response and body. */
  totalTimeoutMs: number;
  /** Redirects followed at most (0: none). */
  maxRedirects: number;
  /**
   * Host names (not addresses, unless an address is written as the URL's host) that may resolve to private
   * addresses such as loopback or RFC 1918. For development only; compared case-insensitively.
   */
  allowedPrivateHosts: readonly string[];
  /**
   * DNS resolver; defaults to c-ares (dns.promises.Resolver, with `dnsTimeoutMs`), which runs off the libuv
   * threadpool: getaddrinfo would share that pool with sharp's decodes, so a slow DNS server could stall
   * image decoding for everyone. Tests inject one.
   */
  lookup?: Resolver;
  /** Timeout of one DNS query of the default resolver (default 2000 ms). */
  dnsTimeoutMs?: number;
  /** Cancels the fetch (e.g. the client went away). */
  signal?: AbortSignal;
  /** User-Agent header. */
  userAgent?: string;
}

export interface FetchedImage {
  data: Buffer;
  /** The format the magic bytes say. */
  type: SniffedType;
  /** The URL the bytes finally came from (after redirects). */
  finalUrl: string;
  redirects: number;
  /** What the server claimed, for logs only. */
  contentType?: string;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const DEFAULT_USER_AGENT = 'visual-product-search/0.1 (image fetcher)';
const ACCEPT = 'image/avif,image/webp,image/jpeg,image/png,image/gif,image/tiff;q=0.9,image/*;q=0.5';
const FORMATS_TEXT = 'JPEG, PNG, WebP, GIF, AVIF, HEIF or TIFF';

const resolvers = new Map<number, dns.promises.Resolver>();

/**
 * A and AAAA by c-ares. `localhost` and `*.localhost` answer loopback without a query (RFC 6761; c-ares
 * does not read /etc/hosts for these queries); like any loopback answer they are refused unless allow-listed.
 */
function caresResolver(timeoutMs: number): Resolver {
  let r = resolvers.get(timeoutMs);
  if (!r) {
    r = new dns.promises.Resolver({ timeout: timeoutMs, tries: 2 });
    resolvers.set(timeoutMs, r);
  }
  const resolver = r;
  return async (hostname) => {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    if (name === 'localhost' || name.endsWith('.localhost')) {
      return [
        { address: '127.0.0.1', family: 4 },
        { address: '::1', family: 6 },
      ];
    }
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
    const out: LookupAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (out.length === 0 && v4.status === 'rejected') throw v4.reason;
    return out;
  };
}

/** Fetches an image URL safely; returns its bytes. See the module comment for what is checked. */
export async function fetchImage(url: string, opts: FetchImageOptions): Promise<Buffer> {
  return (await fetchImageDetailed(url, opts)).data;
}

/** fetchImage with the detected type, final URL and redirect count. */
export async function fetchImageDetailed(url: string, opts: FetchImageOptions): Promise<FetchedImage> {
  // Outcomes by reason (dns, http_status, timeout, …) for /metrics; the fetch itself is below.
  return fetchImageOnce(url, opts).then(
    (fetched) => {
      metrics.imageFetch('ok');
      return fetched;
    },
    (err: unknown) => {
      metrics.imageFetch(outcomeOf(err));
      throw err;
    },
  );
}

async function fetchImageOnce(url: string, opts: FetchImageOptions): Promise<FetchedImage> {
  const allowed = new Set(opts.allowedPrivateHosts.map(normalizeHost).filter(Boolean));
  const resolve = opts.lookup ?? caresResolver(opts.dnsTimeoutMs ?? 2_000);
  const timeout = AbortSignal.timeout(opts.totalTimeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;

  // The only addresses a connection may go to: host name -> vetted addresses, filled before each request.
  const pinned = new Map<string, LookupAddress[]>();
  const agent = new Agent({
    connect: { timeout: opts.connectTimeoutMs, lookup: pinnedLookup(pinned) },
    keepAliveTimeout: 1_000,
  });

  let current = parseUrl(url);
  let currentHost = current?.hostname ?? '';
  const firstHost = normalizeHost(currentHost);
  try {
    if (!current) {
      throw new AppError(ErrorCode.URL_NOT_ALLOWED, 'The image URL is not a valid absolute URL.', {
        reason: 'invalid_url',
      });
    }
    for (let hop = 0; ; hop++) {
      currentHost = current.hostname;
      await vet(current, hop, { allowed, firstHost, resolve, pinned, signal });

      const res = await request(current, {
        dispatcher: agent,
        method: 'GET',
        headers: { 'user-agent': opts.userAgent ?? DEFAULT_USER_AGENT, accept: ACCEPT },
        signal,
        headersTimeout: opts.totalTimeoutMs,
        bodyTimeout: opts.totalTimeoutMs,
      });

      if (REDIRECT_STATUSES.has(res.statusCode)) {
        discard(res.body);
        const location = header(res.headers, 'location');
        if (!location) {
          throw fetchFailed('bad_redirect', `The image server at ${current.host} answered HTTP ${res.statusCode} without a Location.`, {
            status: res.statusCode,
          });
        }
        if (hop >= opts.maxRedirects) {
          throw fetchFailed('too_many_redirects', `The image URL redirected more than ${opts.maxRedirects} times.`, {
            maxRedirects: opts.maxRedirects,
          });
        }
        const next = parseUrl(location, current);
        if (!next) {
          throw new AppError(ErrorCode.URL_NOT_ALLOWED, `The image server at ${current.host} redirected to an invalid URL.`, {
            reason: 'invalid_url',
            redirect: hop + 1,
          });
        }
        current = next;
        continue;
      }

      if (res.statusCode < 200 || res.statusCode > 299) {
        discard(res.body);
        throw fetchFailed('http_status', `The image server at ${current.host} answered HTTP ${res.statusCode}.`, {
          status: res.statusCode,
        });
      }

      const contentType = header(res.headers, 'content-type');
      const declared = Number(header(res.headers, 'content-length'));
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        discard(res.body);
        throw tooLarge(opts.maxBytes, declared);
      }

      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > opts.maxBytes) {
          discard(res.body);
          throw tooLarge(opts.maxBytes);
        }
        chunks.push(chunk);
      }
      const data = Buffer.concat(chunks, total);
      return { data, type: sniffOrThrow(data, contentType), finalUrl: current.href, redirects: hop, contentType };
    }
  } catch (err) {
    throw toAppError(err, { signal, timeout, opts, host: currentHost });
  } finally {
    agent.destroy().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------------

interface VetContext {
  allowed: Set<string>;
  /** The host of the URL the client gave; the allow-list covers it (and redirects staying on it) only. */
  firstHost: string;
  resolve: Resolver;
  pinned: Map<string, LookupAddress[]>;
  signal: AbortSignal;
}

/** Checks one hop's URL and host addresses; pins the vetted addresses for the connection. */
async function vet(url: URL, hop: number, ctx: VetContext): Promise<void> {
  const where = hop === 0 ? 'The image URL' : `The image server redirected to a URL that`;
  const redirect = hop === 0 ? {} : { redirect: hop };
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError(
      ErrorCode.URL_NOT_ALLOWED,
      `${where} uses "${url.protocol.replace(/:$/, '')}"; only http and https image URLs are allowed.`,
      { reason: 'scheme', scheme: url.protocol.replace(/:$/, ''), ...redirect },
    );
  }
  if (url.username || url.password) {
    throw new AppError(
      ErrorCode.URL_NOT_ALLOWED,
      `${hop === 0 ? 'The image URL contains' : 'The image server redirected to a URL that contains'} a user name or password; credentials in image URLs are not allowed.`,
      { reason: 'credentials', ...redirect },
    );
  }

  const host = normalizeHost(url.hostname);
  // The operator vouched for a private host being fetched from, not for wherever that host redirects: an
  // allowed internal server (or a compromised one) must not become a bridge to the rest of the network.
  const isAllowed = ctx.allowed.has(host) && (hop === 0 || host === ctx.firstHost);
  const literal = ipLiteral(url.hostname);
  if (literal) {
    check(literal, { where, host, isAllowed, literal: true, redirect });
    return; // connecting to a literal involves no DNS
  }

  let addresses: LookupAddress[];
  try {
    addresses = await abortable(ctx.resolve(host), ctx.signal);
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    throw fetchFailed('dns', `Could not resolve the image host "${host}".`, { host, ...redirect }, err);
  }
  if (addresses.length === 0) {
    throw fetchFailed('dns', `The image host "${host}" has no addresses.`, { host, ...redirect });
  }
  for (const a of addresses) check(a.address, { where, host, isAllowed, literal: false, redirect });
  ctx.pinned.set(
    host,
    addresses.map((a) => ({ address: a.address, family: a.family })),
  );
}

function check(
  address: string,
  c: { where: string; host: string; isAllowed: boolean; literal: boolean; redirect: Record<string, unknown> },
): void {
  const cls = classifyAddress(address);
  if (cls.kind === 'public' || (cls.kind === 'private' && c.isAllowed)) return;
  const what = describeRange(cls.range);
  const message = c.literal
    ? `${c.where} points to ${what}; image URLs must point to publicly reachable servers.`
    : `${c.where} names the host "${c.host}", which resolves to ${what}; image URLs must point to publicly reachable servers.`;
  throw new AppError(ErrorCode.URL_NOT_ALLOWED, message, {
    reason: 'private_address',
    host: c.host,
    range: cls.range,
    ...c.redirect,
  });
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net/tls.connect that answers only with addresses vetted for that host name in this fetch.
 * Anything else fails closed.
 */
function pinnedLookup(pinned: Map<string, LookupAddress[]>) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const all = pinned.get(normalizeHost(hostname)) ?? [];
    const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
    const list = family ? all.filter((a) => a.family === family) : all;
    if (list.length === 0) {
      const err: NodeJS.ErrnoException = new Error(`no vetted address for ${hostname}`);
      err.code = 'ENOTFOUND';
      callback(err, '', 0);
      return;
    }
    if (options.all) callback(null, list);
    else callback(null, list[0]!.address, list[0]!.family);
  };
}

function sniffOrThrow(data: Buffer, contentType: string | undefined): SniffedType {
  if (data.length === 0) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'The image URL returned an empty body.', { reason: 'empty' });
  }
  const type = sniffImageType(data);
  if (type) return type;
  if (looksLikeSvgOrXml(data)) {
    throw new AppError(
      ErrorCode.INVALID_IMAGE,
      `The image URL returned SVG/XML. SVG is not accepted (it can hide decompression bombs and external references); use ${FORMATS_TEXT}.`,
      { reason: 'svg', contentType },
    );
  }
  throw new AppError(
    ErrorCode.INVALID_IMAGE,
    `The image URL did not return an image: its bytes are not ${FORMATS_TEXT}${contentType ? ` (the server said "${contentType.slice(0, 100)}")` : ''}.`,
    { reason: 'not_an_image', contentType },
  );
}

/** Drops a response body we will not read (destroying it emits an error nobody needs to hear). */
function discard(body: { on(event: 'error', fn: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => {});
  body.destroy();
}

function parseUrl(input: string, base?: URL): URL | null {
  try {
    return new URL(input, base);
  } catch {
    return null;
  }
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function fetchFailed(reason: string, message: string, details: Record<string, unknown> = {}, cause?: unknown): AppError {
  return new AppError(ErrorCode.IMAGE_FETCH_FAILED, message, { reason, ...details }, cause === undefined ? undefined : { cause });
}

function tooLarge(maxBytes: number, declared?: number): AppError {
  return new AppError(
    ErrorCode.IMAGE_TOO_LARGE,
    declared === undefined
      ? `The image is larger than the limit of ${maxBytes} bytes.`
      : `The image is ${declared} bytes; the limit is ${maxBytes} bytes.`,
    declared === undefined ? { maxBytes } : { maxBytes, contentLength: declared },
  );
}

async function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The error codes of a chain of causes (undici wraps socket errors). */
function codes(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err, i = 0; e && typeof e === 'object' && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') out.push(code);
  }
  return out;
}

const TLS_CODE = /^(CERT_|ERR_TLS_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_SSL_|HOSTNAME_MISMATCH)/;

function toAppError(err: unknown, c: { signal: AbortSignal; timeout: AbortSignal; opts: FetchImageOptions; host: string }): AppError {
  if (err instanceof AppError) return err;
  const host = c.host.replace(/^\[|\]$/g, '');
  if (c.timeout.aborted) {
    return fetchFailed('timeout', `Fetching the image from ${host} took longer than ${c.opts.totalTimeoutMs} ms.`, { host }, err);
  }
  if (c.signal.aborted) return fetchFailed('aborted', 'Fetching the image was cancelled.', { host }, err);
  const all = codes(err);
  const has = (...xs: string[]) => all.some((x) => xs.includes(x));
  if (has('UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT')) {
    return fetchFailed(
      'connect_timeout',
      `Could not connect to the image host ${host} within ${c.opts.connectTimeoutMs} ms.`,
      { host },
      err,
    );
  }
  if (has('UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT')) {
    return fetchFailed('timeout', `Fetching the image from ${host} took longer than ${c.opts.totalTimeoutMs} ms.`, { host }, err);
  }
  if (has('ECONNREFUSED')) return fetchFailed('connection_refused', `The image host ${host} refused the connection.`, { host }, err);
  if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL')) {
    return fetchFailed('dns', `Could not resolve the image host "${host}".`, { host }, err);
  }
  if (all.some((x) => TLS_CODE.test(x))) {
    return fetchFailed('tls', `The secure connection to the image host ${host} failed (certificate or TLS error).`, { host }, err);
  }
  if (has('UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED')) {
    return fetchFailed('connection_reset', `The image host ${host} closed the connection before the image was complete.`, { host }, err);
  }
  return fetchFailed('network', `Fetching the image from ${host} failed.`, { host }, err);
}
