/**
 * Page cursors of similarity results (similarProductsPage, searchProductsPage), signed.
 *
 * A cursor says how deep the next page starts (`o`), and the statement for that page ranks o + first + 1
 * matches: the operation's budget and its client's allowance are charged that depth (admission/budget.ts).
 * An unsigned cursor let a client write any depth and rank 1 000 products for the price of one, so a
 * cursor carries an HMAC-SHA256 of its content under the deployment's key (SEARCH_CURSOR_SECRET; unset: a
 * key generated at start, so cursors last one process) and its time of issue. A cursor whose signature
 * does not verify, or older than SEARCH_CURSOR_TTL_S, answers INVALID_CURSOR. Rotation: the previous key
 * (SEARCH_CURSOR_PREVIOUS_SECRET) still verifies, so pages open while a key changes keep working until
 * they expire; new cursors are signed with the current key only.
 *
 * Form: base64url(JSON content) "." base64url(HMAC over that base64url text).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError, ErrorCode } from '../errors.js';

/** What a page cursor holds: where the previous page ended, and which query it belongs to. */
export interface Cursor {
  /** Matches before this page. */
  o: number;
  /** Id and score of the last match of the previous page. */
  id: string;
  s: number;
  /** Fingerprint of the query (text or image reference, filters, mode, model). */
  q: string;
}

interface Signed extends Cursor {
  /** Issued at, seconds since the epoch. */
  t: number;
}

export interface CursorKeys {
  /** Signs new cursors and verifies. */
  current: string;
  /** Verifies only (the key before a rotation). */
  previous?: string | undefined;
  /** How long a cursor is accepted; default one hour. */
  ttlSeconds?: number;
}

/** Longer than any cursor this service issues (JSON of a few fields and a 43-character signature). */
const MAX_CURSOR_LENGTH = 512;

const invalid = (reason: 'forged' | 'expired' | 'malformed') =>
  new AppError(
    ErrorCode.INVALID_CURSOR,
    reason === 'expired'
      ? 'after is an expired cursor: start again without after'
      : 'after is not a cursor issued by this service for these results',
    { field: 'after', reason },
  );

export class PageCursors {
  private readonly verifying: Buffer[];
  private readonly signing: Buffer;
  private readonly ttlSeconds: number;

  constructor(keys: CursorKeys = { current: randomBytes(32).toString('base64url') }) {
    this.signing = Buffer.from(keys.current, 'utf8');
    this.verifying = [this.signing, ...(keys.previous ? [Buffer.from(keys.previous, 'utf8')] : [])];
    this.ttlSeconds = keys.ttlSeconds ?? 3600;
  }

  private mac(key: Buffer, content: string): Buffer {
    return createHmac('sha256', key).update(content).digest();
  }

  encode(c: Cursor, now = Date.now()): string {
    const signed: Signed = { o: c.o, id: c.id, s: c.s, q: c.q, t: Math.floor(now / 1000) };
    const content = Buffer.from(JSON.stringify(signed)).toString('base64url');
    return `${content}.${this.mac(this.signing, content).toString('base64url')}`;
  }

  /** The cursor's content once its signature and age are checked; INVALID_CURSOR otherwise. */
  verify(after: string, now = Date.now()): Cursor {
    if (after.length > MAX_CURSOR_LENGTH) throw invalid('malformed');
    const [content, signature, ...rest] = after.split('.');
    if (!content || !signature || rest.length || !/^[A-Za-z0-9_-]+$/.test(content + signature)) throw invalid('malformed');
    const given = Buffer.from(signature, 'base64url');
    const ok = this.verifying.some((key) => {
      const expected = this.mac(key, content);
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
    if (!ok) throw invalid('forged');
    let c: Partial<Signed>;
    try {
      c = JSON.parse(Buffer.from(content, 'base64url').toString('utf8')) as Partial<Signed>;
    } catch {
      throw invalid('malformed');
    }
    if (
      !Number.isInteger(c.o) ||
      c.o! < 1 ||
      typeof c.id !== 'string' ||
      typeof c.s !== 'number' ||
      typeof c.q !== 'string' ||
      !Number.isInteger(c.t)
    )
      throw invalid('malformed');
    if (Math.floor(now / 1000) - c.t! > this.ttlSeconds) throw invalid('expired');
    return { o: c.o!, id: c.id, s: c.s, q: c.q };
  }

  /**
   * How deep the page after `after` starts, for the budget (before any resolver runs): the verified
   * offset, or 0 for a cursor that does not verify (the resolver refuses that one with INVALID_CURSOR).
   */
  depthOf(after: unknown): number {
    if (typeof after !== 'string' || !after) return 0;
    try {
      return this.verify(after).o;
    } catch {
      return 0;
    }
  }
}
