/**
 * A client's query allowance: how much its GraphQL operations may cost per window, counted in the units of
 * the operation budget (admission/budget.ts): 1 per operation, plus Σk of its similarity fields, plus Σfirst
 * of its pages. The request-count rate limit (@fastify/rate-limit, src/http/rate-limit.ts) cannot tell a
 * shopper's `k: 10` from a scraper's `3 × k: 333`, which costs a hundred times more to answer; this can.
 *
 * A client spends its allowance on what it asks for, served or not: the cost is charged before the
 * operation runs (so one turned away by a full gate, OVERLOADED, has paid too), and an operation refused for
 * its size (parse, validation, budget) is charged a penalty instead, so a client that floods refusals runs
 * out as fast as one whose heavy queries are served. Once out, its requests are refused before
 * their body is read (RATE_LIMITED, HTTP 429, Retry-After), which is the cheapest answer the server has.
 *
 * Counted per process, like the request rate limit: N replicas behind a load balancer allow N times as much.
 * rate-limiter-flexible (not our own counters): its memory store expires keys by itself, so one entry per
 * address an attacker makes up cannot accumulate.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError, ErrorCode } from '../errors.js';

export interface AllowanceSettings {
  enabled: boolean;
  /** Points per window for a caller without a valid token (keyed by address). */
  anonymousPoints: number;
  /** Points per window for the admin token. */
  adminPoints: number;
  windowMs: number;
  /** Points charged for an operation refused for its size or because the service was overloaded. */
  refusalPenalty: number;
}

export type Caller = 'anonymous' | 'admin';

export class ClientAllowance {
  private readonly limiters: Record<Caller, RateLimiterMemory>;

  constructor(readonly settings: AllowanceSettings) {
    const duration = Math.max(1, Math.ceil(settings.windowMs / 1000)); // the library counts whole seconds
    this.limiters = {
      anonymous: new RateLimiterMemory({ keyPrefix: 'anonymous', points: settings.anonymousPoints, duration }),
      admin: new RateLimiterMemory({ keyPrefix: 'admin', points: settings.adminPoints, duration }),
    };
  }

  /** Milliseconds until `key` may send again when its allowance is spent; 0 when it has some left. */
  async spent(caller: Caller, key: string): Promise<number> {
    if (!this.settings.enabled) return 0;
    const res = await this.limiters[caller].get(key);
    return res && res.remainingPoints <= 0 ? Math.max(1, res.msBeforeNext) : 0;
  }

  /** Charges `points`; throws RATE_LIMITED when they do not fit in what is left of the window. */
  async charge(caller: Caller, key: string, points: number): Promise<void> {
    if (!this.settings.enabled || points <= 0) return;
    try {
      await this.limiters[caller].consume(key, points);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      throw rateLimited(err.msBeforeNext, this.limiters[caller].points, this.settings.windowMs);
    }
  }

  /** Charges the refusal penalty (never throws: the request is being refused anyway). */
  async penalise(caller: Caller, key: string): Promise<void> {
    if (!this.settings.enabled) return;
    await this.limiters[caller].penalty(key, this.settings.refusalPenalty);
  }
}

export function rateLimited(msBeforeNext: number, points: number, windowMs: number): AppError {
  const retryAfterSeconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return new AppError(
    ErrorCode.RATE_LIMITED,
    `This client's query allowance (${points} points per ${Math.round(windowMs / 1000)} s; an operation costs 1 + Σk + Σfirst) is spent; retry in ${retryAfterSeconds} s.`,
    { retryAfterSeconds, allowance: points },
  );
}
