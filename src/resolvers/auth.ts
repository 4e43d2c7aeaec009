import { timingSafeEqual } from 'node:crypto';
import { AppError, ErrorCode } from '../errors.js';
import type { RequestContext } from './context.js';

/** Whether `given` is the configured admin token (constant-time compare); false when admin is off. */
export function isAdminToken(expected: string | undefined, given: string | null | undefined): boolean {
  if (!expected || !given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Admin operations need `Authorization: Bearer <ADMIN_TOKEN>`; with no token configured they are off. */
export function requireAdmin(ctx: RequestContext): void {
  const expected = ctx.services.config.adminToken;
  if (!expected) {
    throw new AppError(ErrorCode.ADMIN_DISABLED, 'Admin operations are disabled: the server has no ADMIN_TOKEN configured.');
  }
  const given = ctx.bearerToken;
  const a = Buffer.from(given ?? '');
  const b = Buffer.from(expected);
  if (!given || a.length !== b.length || !timingSafeEqual(a, b)) {
    throw new AppError(ErrorCode.UNAUTHENTICATED, 'This operation requires the header "Authorization: Bearer <admin token>".');
  }
}
