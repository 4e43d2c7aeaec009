/**
 * A client's query allowance: how much its GraphQL operations may cost per window, counted in the units of
 * the operation budget (admission/budget.ts): 1 per operation, plus Σk of its similarity fields, plus Σfirst
 * of its pages. The request-count rate limit (@fastify/rate-limit, src/http/rate-limit.ts) cannot tell a
 * shopper's `k: 10` from a scraper's `3 × k: 333`, which costs a hundred times more to answer; this can.
 *
 * An anonymous operation is charged to its connection's allowance (`points`), and a heavy one (costing more
 * than `heavyPoints`: the heavy-query gate's k) to its address's too (`addressPoints`, several times larger).
 * The connection's stops one abusive client without refusing the others behind the same address (a
 * storefront's backend, an office NAT, or every client of a test on one machine). The address's stops a
 * client that opens a new connection for each heavy request; it refuses only heavy operations, so that such
 * a client cannot get a storefront's small queries from the same address refused. Behind a trusted proxy
 * the connections are the proxy's, so the client's forwarded address takes the connection's place. The
 * admin token has one allowance of its own.
 *
 * A client spends its allowance on what it asks for, served or not: the cost is charged before the
 * operation runs (so one turned away by a full gate, OVERLOADED, has paid too), and an operation refused for
 * its size or form (parse, validation, budget) is charged a penalty instead, so a client that floods such
 * refusals runs out as fast as one whose heavy queries are served. Once out, its requests are refused before
 * their body is read (RATE_LIMITED, HTTP 429, Retry-After), the cheapest answer the server has.
 *
 * Counted per process, like the request rate limit: N replicas behind a load balancer allow N times as much.
 * rate-limiter-flexible (not our own counters): its memory store expires keys by itself, so one entry per
 * connection or address an attacker makes up cannot accumulate.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError, ErrorCode } from '../errors.js';

export interface AllowanceSettings {
  enabled: boolean;
  /** Points per window of one connection without a valid token (behind a trusted proxy: one client address). */
  points: number;
  /** Points per window of one address without a valid token, all its connections' heavy operations together. */
  addressPoints: number;
  /** An operation costing more than this is heavy (charged to its address too). */
  heavyPoints: number;
  /** Points per window for the admin token. */
  adminPoints: number;
  windowMs: number;
  /** Points charged for an operation refused for its size or form. */
  refusalPenalty: number;
}

/** Who pays for a request: the admin token, or a connection and the address it comes from. */
export type Payer = { caller: 'admin' } | { caller: 'anonymous'; connection: string; address: string };

export type Bucket = 'connection' | 'address' | 'admin';

export class ClientAllowance {
  private readonly limiters: Record<Bucket, RateLimiterMemory>;

  constructor(readonly settings: AllowanceSettings) {
    const duration = Math.max(1, Math.ceil(settings.windowMs / 1000)); // the library counts whole seconds
    this.limiters = {
      connection: new RateLimiterMemory({ keyPrefix: 'connection', points: settings.points, duration }),
      address: new RateLimiterMemory({ keyPrefix: 'address', points: settings.addressPoints, duration }),
      admin: new RateLimiterMemory({ keyPrefix: 'admin', points: settings.adminPoints, duration }),
    };
  }

  /** The allowances an operation of `payer` is charged to; `heavy`: the address's too. */
  private bucketsOf(payer: Payer, heavy: boolean): Array<[Bucket, string]> {
    if (payer.caller === 'admin') return [['admin', 'token']];
    return heavy
      ? [
          ['connection', payer.connection],
          ['address', payer.address],
        ]
      : [['connection', payer.connection]];
  }

  /**
   * When the allowance that refuses any operation of `payer` is spent (its connection's, or the admin
   * token's): which, and the milliseconds until it refills; else null. The address's allowance is not
   * looked at here: it refuses heavy operations only, and an operation's cost is known once it is parsed.
   */
  async spent(payer: Payer): Promise<{ bucket: Bucket; msBeforeNext: number } | null> {
    if (!this.settings.enabled) return null;
    let spent: { bucket: Bucket; msBeforeNext: number } | null = null;
    for (const [bucket, key] of this.bucketsOf(payer, false)) {
      const res = await this.limiters[bucket].get(key);
      if (res && res.remainingPoints <= 0 && (!spent || res.msBeforeNext > spent.msBeforeNext))
        spent = { bucket, msBeforeNext: Math.max(1, res.msBeforeNext) };
    }
    return spent;
  }

  /** Charges `points` to the allowances of `payer`; throws RATE_LIMITED when they do not fit in one of them. */
  async charge(payer: Payer, points: number): Promise<void> {
    if (!this.settings.enabled || points <= 0) return;
    let refused: { msBeforeNext: number; bucket: Bucket } | null = null;
    for (const [bucket, key] of this.bucketsOf(payer, points > this.settings.heavyPoints)) {
      try {
        await this.limiters[bucket].consume(key, points);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        if (!refused || err.msBeforeNext > refused.msBeforeNext) refused = { msBeforeNext: err.msBeforeNext, bucket };
      }
    }
    if (refused) throw this.rateLimited(refused.msBeforeNext, refused.bucket);
  }

  /** Charges the refusal penalty (never throws: the request is being refused anyway). */
  async penalise(payer: Payer): Promise<void> {
    if (!this.settings.enabled) return;
    for (const [bucket, key] of this.bucketsOf(payer, true)) await this.limiters[bucket].penalty(key, this.settings.refusalPenalty);
  }

  /** The RATE_LIMITED error for a spent allowance of `payer`, `msBeforeNext` before it refills. */
  rateLimited(msBeforeNext: number, bucket: Bucket = 'connection'): AppError {
    const retryAfterSeconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
    const of = { connection: "this connection's", address: "this address's", admin: "the admin token's" }[bucket];
    return new AppError(
      ErrorCode.RATE_LIMITED,
      `${of[0]!.toUpperCase()}${of.slice(1)} query allowance (${this.limiters[bucket].points} points per ${Math.round(this.settings.windowMs / 1000)} s; an operation costs 1 + Σk + Σfirst) is spent; retry in ${retryAfterSeconds} s.`,
      { retryAfterSeconds, allowance: bucket },
    );
  }
}
