/**
 * Typed application errors with stable codes. Every layer below the resolvers throws these;
 * the GraphQL layer maps `code` to `extensions.code` unchanged, so clients can rely on them.
 * Anything that is not an AppError is an internal error and is masked before it reaches a client.
 */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  INVALID_IMAGE: 'INVALID_IMAGE',
  IMAGE_TOO_LARGE: 'IMAGE_TOO_LARGE',
  IMAGE_FETCH_FAILED: 'IMAGE_FETCH_FAILED',
  URL_NOT_ALLOWED: 'URL_NOT_ALLOWED',
  MODEL_UNAVAILABLE: 'MODEL_UNAVAILABLE',
  EMBEDDING_FAILED: 'EMBEDDING_FAILED',
  ADMIN_DISABLED: 'ADMIN_DISABLED',
  CONFLICT: 'CONFLICT',
  /** A page cursor that was not issued by this service (forged, altered, another key) or has expired. */
  INVALID_CURSOR: 'INVALID_CURSOR',
  /** The database cannot be reached (down, restarting, failing over); retrying later can succeed. */
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  /** A statement ran past its statement_timeout, or a request past its deadline (GRAPHQL_REQUEST_TIMEOUT_MS). */
  TIMEOUT: 'TIMEOUT',
  /** No slot on an expensive path (fetch, decode, embed, query) within its wait bound: HTTP 503, retry later. */
  OVERLOADED: 'OVERLOADED',
  /** Too many requests from this client in the rate-limit window: HTTP 429 with Retry-After. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** The operation asks for more similarity fields or a larger sum of k / first than its caller may. */
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED',
  /** The client went away, or cancelled the request, before it was answered. */
  REQUEST_ABORTED: 'REQUEST_ABORTED',
  /** A multipart upload without the CSRF preflight header (Apollo-Require-Preflight). */
  PREFLIGHT_REQUIRED: 'PREFLIGHT_REQUIRED',
  /** A multipart request with more files than its caller may send. */
  TOO_MANY_FILES: 'TOO_MANY_FILES',
  /** A request body over HTTP_UPLOAD_MAX_BYTES (counted while streaming). */
  REQUEST_TOO_LARGE: 'REQUEST_TOO_LARGE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AppError';
  }
}

export const badInput = (message: string, details?: Record<string, unknown>) => new AppError(ErrorCode.BAD_USER_INPUT, message, details);

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;
