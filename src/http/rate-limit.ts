/**
 * Per-client limits at the HTTP edge, before a request's body is read:
 *
 *  - the request count per window (@fastify/rate-limit, RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS);
 *  - the query allowance (admission/allowance.ts): a client that has spent it is refused here, by a lookup,
 *    without parsing its operation; charging it happens once the operation's cost is known (server.ts);
 *  - the tarpit: a 429 is held up to RATE_LIMIT_TARPIT_MS before it is sent. A client that resends the
 *    moment it is refused (a closed loop, as scrapers are written) would otherwise make the server answer
 *    refusals at the speed of its CPU, which is what slows everyone else; held, it sends one request per
 *    tarpit period per connection. At most RATE_LIMIT_TARPIT_MAX_HELD answers are held at once (each holds
 *    a socket), beyond that they go at once.
 *
 * A client is its token when it presents a valid one (only the admin token is), else its address (behind a
 * proxy: TRUST_PROXY); a made-up token must not buy a fresh allowance.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientAllowance, rateLimited, type Caller } from '../admission/allowance.js';
import type { LimitSettings } from '../config.js';
import { ErrorCode } from '../errors.js';
import { metrics } from '../metrics/index.js';

export interface Client {
  caller: Caller;
  /** The key of its counters: `token:admin` or `ip:<address>`. */
  key: string;
}

export function clientOf(request: FastifyRequest, isAdmin: (request: FastifyRequest) => boolean): Client {
  return isAdmin(request) ? { caller: 'admin', key: 'token:admin' } : { caller: 'anonymous', key: `ip:${request.ip}` };
}

/** A GraphQL-shaped 429 body, so GraphQL clients read it like any other error. */
function rateLimitedBody(message: string, retryAfterSeconds: number, extra: Record<string, unknown> = {}) {
  return { errors: [{ message, extensions: { code: ErrorCode.RATE_LIMITED, retryAfterSeconds, ...extra } }] };
}

/**
 * Registers the request rate limit, the allowance check and the tarpit; returns the allowance, which the
 * GraphQL layer charges. Call first among the hooks, so a refused request reads no body.
 */
export async function registerClientLimits(
  app: FastifyInstance,
  settings: LimitSettings['rateLimit'],
  isAdmin: (request: FastifyRequest) => boolean,
  isClosing: () => boolean,
): Promise<ClientAllowance> {
  const allowance = new ClientAllowance({
    enabled: settings.enabled,
    anonymousPoints: settings.points,
    adminPoints: settings.adminPoints,
    windowMs: settings.windowMs,
    refusalPenalty: settings.refusalPenalty,
  });
  if (!settings.enabled) return allowance;

  // Health checks and the storefront's static files are exempt (their route options say so).
  await app.register(rateLimit, {
    global: true,
    max: settings.max,
    timeWindow: settings.windowMs,
    keyGenerator: (request) => clientOf(request, isAdmin).key,
    errorResponseBuilder: (_request, context) => ({
      statusCode: context.statusCode,
      ...rateLimitedBody(
        `Too many requests: at most ${context.max} per ${context.after}; retry in ${Math.ceil(context.ttl / 1000)} s.`,
        Math.ceil(context.ttl / 1000),
      ),
    }),
  });

  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.url !== '/graphql' || request.method === 'OPTIONS') return;
    const client = clientOf(request, isAdmin);
    const waitMs = await allowance.spent(client.caller, client.key);
    if (!waitMs) return;
    metrics.admissionRefused('allowance', 'RATE_LIMITED');
    const err = rateLimited(waitMs, client.caller === 'admin' ? settings.adminPoints : settings.points, settings.windowMs);
    const retryAfterSeconds = Number(err.details?.retryAfterSeconds ?? 1);
    return reply.code(429).header('retry-after', String(retryAfterSeconds)).send(rateLimitedBody(err.message, retryAfterSeconds));
  });

  let held = 0;
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode !== 429 || settings.tarpitMs <= 0 || held >= settings.tarpitMaxHeld || isClosing()) return payload;
    const retryAfterMs = Number(reply.getHeader('retry-after') ?? 0) * 1000;
    held++;
    try {
      await sleep(retryAfterMs > 0 ? Math.min(settings.tarpitMs, retryAfterMs) : settings.tarpitMs);
    } finally {
      held--;
    }
    return payload;
  });
  return allowance;
}
