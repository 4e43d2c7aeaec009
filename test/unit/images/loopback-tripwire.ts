/**
 * Test guard: while installed, any TCP connection to an address outside 127.0.0.0/8 is blocked before it is
 * attempted and recorded. The fetch tests run only against servers on 127.0.0.1; a URL that points at a
 * private or public address must be refused by the code under test before it connects, and this tripwire
 * makes a regression fail loudly instead of sending traffic anywhere.
 */
import net from 'node:net';
import type { LookupAddress } from 'node:dns';

export interface Tripwire {
  /** Every blocked (non-loopback) connection target. */
  readonly violations: string[];
  /** Every address a connection was made (or attempted) to. */
  readonly targets: string[];
  uninstall(): void;
}

const isLoopback = (ip: string) => (net.isIPv4(ip) ? ip.startsWith('127.') : ip === '::1');

export function installLoopbackTripwire(): Tripwire {
  const violations: string[] = [];
  const targets: string[] = [];
  // Kept unbound on purpose: restore() puts it back on the prototype, and patched() calls it with apply(this).
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const original = net.Socket.prototype.connect;

  const guard = (ip: string) => {
    targets.push(ip);
    if (!isLoopback(ip)) {
      violations.push(ip);
      const err: NodeJS.ErrnoException = new Error(`tripwire: connection to non-loopback ${ip} blocked`);
      err.code = 'ETRIPWIRE';
      throw err;
    }
  };

  // net.Socket#connect(options, cb) | (port, host, cb) | (path, cb)
  net.Socket.prototype.connect = function patched(this: net.Socket, ...args: unknown[]) {
    const first = args[0];
    const opts: Record<string, unknown> | null = Array.isArray(first)
      ? ((first[0] as Record<string, unknown>) ?? null)
      : typeof first === 'object' && first
        ? (first as Record<string, unknown>)
        : null;
    if (opts && typeof opts.path !== 'string') {
      const host = typeof opts.host === 'string' ? opts.host.replace(/^\[|\]$/g, '') : 'localhost';
      if (net.isIP(host)) {
        guard(host);
      } else if (typeof opts.lookup === 'function') {
        const inner = opts.lookup as (h: string, o: unknown, cb: (...a: unknown[]) => void) => void;
        opts.lookup = (h: string, o: unknown, cb: (...a: unknown[]) => void) =>
          inner(h, o, (err: unknown, address: unknown, family: unknown) => {
            if (err) return cb(err, address, family);
            try {
              if (Array.isArray(address)) (address as LookupAddress[]).forEach((a) => guard(a.address));
              else guard(String(address));
            } catch (e) {
              return cb(e, Array.isArray(address) ? [] : '', family);
            }
            cb(null, address, family);
          });
      } else {
        // a name with the default resolver: only names we know resolve to loopback are let through
        if (host !== 'localhost') guard(host);
      }
    } else if (typeof first === 'number') {
      const host = typeof args[1] === 'string' ? args[1] : 'localhost';
      if (host !== 'localhost') guard(host);
    }
    return (original as (...a: unknown[]) => net.Socket).apply(this, args);
  };

  return {
    violations,
    targets,
    uninstall() {
      net.Socket.prototype.connect = original;
    },
  };
}
