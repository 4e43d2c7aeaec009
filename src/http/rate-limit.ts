/**
 * Per-client limits at the HTTP edge, before a request's body is read:
 *
 *  - the request count per window (@fastify/rate-limit, RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS, per address);
 *  - the query allowance (admission/allowance.ts): a client that has spent it is refused here, by a lookup,
 *    without parsing its operation; charging it happens once the operation's cost is known (server.ts);
 *  - the tarpit: a refusal (429, and an operation refused for its size or form or because the service is
 *    overloaded) is held up to RATE_LIMIT_TARPIT_MS before it is sent. A client that resends the moment it
 *    is refused (a closed loop, as scrapers are written) would otherwise make the server answer refusals at
 *    the speed of its CPU, and that is what slows everyone else; held, it sends one request per tarpit
 *    period per connection. A held answer costs a socket and a timer, no CPU. At most
 *    RATE_LIMIT_TARPIT_MAX_HELD are held at once; beyond that they go at once.
 *
 * A client is its token when it presents a valid one (only the admin token is), else its connection and its
 * address (behind a proxy: TRUST_PROXY, the forwarded address); a made-up token must not buy a fresh allowance.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientAllowance, type Payer } from '../admission/allowance.js';
import type { LimitSettings } from '../config.js';
import { ErrorCode } from '../errors.js';
import { metrics } from '../metrics/index.js';

export interface Client {
  /** The key of the request-count limit: `token:admin` or `ip:<address>`. */
  key: string;
  /** Who pays for its operations (the query allowance). */
  payer: Payer;
}

export function clientOf(request: FastifyRequest, isAdmin: (request: FastifyRequest) => boolean, behindProxy: boolean): Client {
  if (isAdmin(request)) return { key: 'token:admin', payer: { caller: 'admin' } };
  const address = `ip:${request.ip}`;
  const socket = request.raw.socket;
  // Behind a proxy the socket is the proxy's (pooled, shared by its clients): the forwarded address is the client.
  const connection = behindProxy ? address : `conn:${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  return { key: address, payer: { caller: 'anonymous', connection, address } };
}

/** A GraphQL-shaped 429 body, so GraphQL clients read it like any other error. */
function rateLimitedBody(message: string, retryAfterSeconds: number) {
  return { errors: [{ message, extensions: { code: ErrorCode.RATE_LIMITED, retryAfterSeconds } }] };
}

export interface ClientLimits {
  allowance: ClientAllowance;
  clientOf(request: FastifyRequest): Client;
  /** Marks a request whose answer is a refusal to hold in the tarpit (its status alone does not say so). */
  tarpit(request: IncomingMessage): void;
}

/**
 * Registers the request rate limit, the allowance check and the tarpit. Call first among the hooks, so a
 * refused request reads no body.
 */
export async function registerClientLimits(
  app: FastifyInstance,
  settings: LimitSettings['rateLimit'],
  behindProxy: boolean,
  isAdmin: (request: FastifyRequest) => boolean,
  isClosing: () => boolean,
): Promise<ClientLimits> {
  const allowance = new ClientAllowance({
    enabled: settings.enabled,
    points: settings.points,
    addressPoints: settings.addressPoints,
    heavyPoints: settings.heavyPoints,
    adminPoints: settings.adminPoints,
    windowMs: settings.windowMs,
    refusalPenalty: settings.refusalPenalty,
  });
  const refusals = new WeakSet<IncomingMessage>();
  const limits: ClientLimits = {
    allowance,
    clientOf: (request) => clientOf(request, isAdmin, behindProxy),
    tarpit: (request) => refusals.add(request),
  };
  if (!settings.enabled) return limits;

  // Health checks are exempt (their route options say so).
  await app.register(rateLimit, {
    global: true,
    max: settings.max,
    timeWindow: settings.windowMs,
    keyGenerator: (request) => limits.clientOf(request).key,
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
    const spent = await allowance.spent(limits.clientOf(request).payer);
    if (!spent) return;
    metrics.admissionRefused('allowance', 'RATE_LIMITED');
    const err = allowance.rateLimited(spent.msBeforeNext, spent.bucket);
    const retryAfterSeconds = Number(err.details?.retryAfterSeconds ?? 1);
    return reply.code(429).header('retry-after', String(retryAfterSeconds)).send(rateLimitedBody(err.message, retryAfterSeconds));
  });

  let held = 0;
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 429 && !refusals.has(request.raw)) return payload;
    if (settings.tarpitMs <= 0 || held >= settings.tarpitMaxHeld || isClosing()) return payload;
    const retryAfterMs = Number(reply.getHeader('retry-after') ?? 0) * 1000;
    held++;
    try {
      await sleep(retryAfterMs > 0 ? Math.min(settings.tarpitMs, retryAfterMs) : settings.tarpitMs);
    } finally {
      held--;
    }
    return payload;
  });
  return limits;
}
