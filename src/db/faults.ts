/**
 * The one place that decides which database failures a client may see as a stable code:
 * connection faults (the server down, restarting, failing over, or refusing connections) become
 * DATABASE_UNAVAILABLE, a statement_timeout becomes TIMEOUT. Everything else stays an internal error.
 */
import { AppError, ErrorCode, isAppError } from '../errors.js';

// SQLSTATEs of a server that is going away or not there yet (class 08: connection exceptions;
// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now; 53300 too_many_connections).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08004', '08006']);
// Socket-level failures, as Node reports them in `code`.
const UNAVAILABLE_SYSCALL_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);
// node-postgres / pg-pool messages that carry no code.
const UNAVAILABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|not queryable/i;
// 57014 query_canceled: what statement_timeout raises (a user cancel looks the same; the service sends none).
const TIMEOUT_SQLSTATES = new Set(['57014']);

export type DatabaseFault = 'unavailable' | 'timeout';

/** Classifies an error (following `cause` and AggregateError members); null when it is no database fault. */
export function databaseFault(err: unknown, depth = 0): DatabaseFault | null {
  if (!err || typeof err !== 'object' || depth > 5) return null;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (TIMEOUT_SQLSTATES.has(code)) return 'timeout';
  if (UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SYSCALL_CODES.has(code)) return 'unavailable';
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.test(e.message)) return 'unavailable';
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const f = databaseFault(inner, depth + 1);
      if (f) return f;
    }
  }
  return databaseFault(e.cause, depth + 1);
}

/** The AppError a client sees for a database fault, or null when `err` is none (or already an AppError). */
export function databaseFaultError(err: unknown): AppError | null {
  if (isAppError(err)) return null;
  const fault = databaseFault(err);
  if (fault === 'unavailable') {
    return new AppError(ErrorCode.DATABASE_UNAVAILABLE, 'The database is unavailable; retry shortly', undefined, { cause: err });
  }
  if (fault === 'timeout') {
    return new AppError(ErrorCode.TIMEOUT, 'The database statement took too long and was cancelled', undefined, { cause: err });
  }
  return null;
}

/**
 * What a log line keeps of a database error: its message and codes. A node-postgres error can hold
 * references to the client or pool (and through them the connection string); logging the object
 * whole dumps all of that.
 */
export function dbErrorFields(err: unknown): Record<string, unknown> {
  if (!err || typeof err !== 'object') return { message: String(err) };
  const e = err as Record<string, unknown>;
  const out: Record<string, unknown> = { message: typeof e.message === 'string' ? e.message : 'unknown error' };
  for (const k of ['code', 'severity', 'routine', 'errno', 'syscall']) {
    const v = e[k];
    if (typeof v === 'string' || typeof v === 'number') out[k] = v;
  }
  return out;
}
