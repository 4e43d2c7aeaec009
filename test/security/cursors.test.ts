/**
 * Issue 21, finding 9: page cursors are signed (src/search/cursor.ts), survive a key rotation while they
 * are young, expire, and the budget charges a page what its statement ranks (admission/budget.ts).
 */
import { Kind, parse, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { operationCost } from '../../src/admission/budget.js';
import { PageCursors } from '../../src/search/cursor.js';

const OLD_KEY = 'the-previous-cursor-key-0123456789';
const NEW_KEY = 'the-current-cursor-key-0123456789ab';
const state = { o: 10, id: '42', s: 0.5, q: 'fingerprint' };

const reason = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return { code: (err as { code?: string }).code, reason: (err as { details?: { reason?: string } }).details?.reason };
  }
  return null;
};

describe('signed page cursors', () => {
  it('verify what they signed, and refuse a rewritten one as INVALID_CURSOR (forged)', () => {
    const cursors = new PageCursors({ current: NEW_KEY });
    const cursor = cursors.encode(state);
    expect(cursors.verify(cursor)).toEqual(state);
    const [, signature] = cursor.split('.');
    const forged = `${Buffer.from(JSON.stringify({ ...state, o: 998, t: Math.floor(Date.now() / 1000) })).toString('base64url')}.${signature}`;
    expect(reason(() => cursors.verify(forged))).toEqual({ code: 'INVALID_CURSOR', reason: 'forged' });
    // The old unsigned form (base64url JSON) is not a cursor any more.
    expect(reason(() => cursors.verify(Buffer.from(JSON.stringify(state)).toString('base64url')))).toMatchObject({
      code: 'INVALID_CURSOR',
    });
  });

  it('accept cursors of the previous key after a rotation, and none of a key not configured', () => {
    const before = new PageCursors({ current: OLD_KEY }).encode(state);
    expect(new PageCursors({ current: NEW_KEY, previous: OLD_KEY }).verify(before)).toEqual(state);
    expect(reason(() => new PageCursors({ current: NEW_KEY }).verify(before))).toEqual({ code: 'INVALID_CURSOR', reason: 'forged' });
  });

  it('expire after their time to live', () => {
    const cursors = new PageCursors({ current: NEW_KEY, ttlSeconds: 60 });
    const issued = Date.now() - 61_000;
    expect(reason(() => cursors.verify(cursors.encode(state, issued)))).toEqual({ code: 'INVALID_CURSOR', reason: 'expired' });
  });

  it('make the budget charge a page its depth: offset + first + 1', () => {
    const cursors = new PageCursors({ current: NEW_KEY });
    const deep = cursors.encode({ ...state, o: 998 });
    const doc = parse(
      'query($after: String) { similarProductsPage(image: {productId: "1"}, first: 1, after: $after) { pageInfo { hasNextPage } } }',
    );
    const op = doc.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION) as OperationDefinitionNode;
    const depth = (after: unknown) => cursors.depthOf(after);
    expect(operationCost(doc, op, { after: deep }, depth).similarityK).toBe(1000);
    expect(operationCost(doc, op, {}, depth).similarityK).toBe(2);
    // A cursor that does not verify counts as a first page (its resolver refuses it).
    expect(operationCost(doc, op, { after: 'forged' }, depth).similarityK).toBe(2);
  });
});
