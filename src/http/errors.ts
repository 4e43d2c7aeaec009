/**
 * The error handler for the routes outside GraphQL (thumbnails, the storefront page, /readyz, /healthz).
 * Fastify's default handler answers a thrown error with its message, and a database or file-system error's
 * message names tables, paths and internals; GraphQL masks those in formatError (server.ts), this does the
 * same for everything else: a client error (4xx, set by Fastify or a plugin) keeps its message, a database
 * fault gets its stable code and a 503/504, and anything else is logged in full and answered with a generic
 * body that carries only the request id to quote in a bug report.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { databaseFaultError, dbErrorFields } from '../db/faults.js';
import { ErrorCode, isAppError } from '../errors.js';

/** HTTP status for an AppError thrown by a route; its message is written for clients (as in GraphQL). */
const STATUS: Partial<Record<string, number>> = {
  [ErrorCode.BAD_USER_INPUT]: 400,
  [ErrorCode.INVALID_IMAGE]: 400,
  [ErrorCode.URL_NOT_ALLOWED]: 400,
  [ErrorCode.UNAUTHENTICATED]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.ADMIN_DISABLED]: 403,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.CONFLICT]: 409,
  [ErrorCode.IMAGE_TOO_LARGE]: 413,
  [ErrorCode.IMAGE_FETCH_FAILED]: 502,
  [ErrorCode.MODEL_UNAVAILABLE]: 503,
  [ErrorCode.DATABASE_UNAVAILABLE]: 503,
  [ErrorCode.TIMEOUT]: 504,
};

export const INTERNAL_ERROR_BODY = { error: 'Internal server error', code: 'INTERNAL_SERVER_ERROR' } as const;

export function maskInternalErrors(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    // A refusal already shaped as a GraphQL answer (the rate limiter's, for /graphql clients) goes out as built.
    const shaped = (err as { errors?: unknown }).errors;
    if (status >= 400 && status < 500 && Array.isArray(shaped)) return reply.code(status).send({ errors: shaped });
    if (status >= 400 && status < 500) {
      // the client's own mistake (bad JSON, body too large, …): Fastify's message says what, and nothing internal
      return reply.code(status).send({ error: err.message, code: err.code ?? 'BAD_REQUEST' });
    }
    if (isAppError(err)) {
      req.log.info({ code: err.code, msg: err.message }, 'request failed');
      const code = STATUS[err.code] ?? 503; // a code added later (e.g. OVERLOADED) is a transient refusal, not a bug
      return reply.code(code).send({ error: err.message, code: err.code });
    }
    const fault = databaseFaultError(err);
    if (fault) {
      req.log.warn({ err: dbErrorFields(err), code: fault.code }, 'database fault in request');
      return reply
        .code(fault.code === ErrorCode.DATABASE_UNAVAILABLE ? 503 : 504)
        .header('retry-after', '1')
        .send({ error: fault.message, code: fault.code });
    }
    req.log.error({ err, url: req.url }, 'unexpected error in HTTP request');
    return reply.code(500).send({ ...INTERNAL_ERROR_BODY, requestId: req.id });
  });
}
