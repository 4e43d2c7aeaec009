/** The overlap measures of compareModels (src/search/compare.ts), on hand-made lists. */
import { describe, expect, it } from 'vitest';
import { jaccard, overlapOf, sharedRankCorrelation } from '../../../src/search/compare.js';

describe('jaccard', () => {
  it('is |A ∩ B| / |A ∪ B|', () => {
    expect(jaccard(['a', 'b', 'c'], ['a', 'b', 'c'])).toBe(1);
    expect(jaccard(['a', 'b'], ['c', 'd'])).toBe(0);
    expect(jaccard(['a', 'b', 'c', 'd'], ['c', 'd', 'e', 'f'])).toBeCloseTo(2 / 6);
    expect(jaccard([], [])).toBe(1);
    expect(jaccard(['a'], [])).toBe(0);
  });
});

describe('sharedRankCorrelation', () => {
  it('is 1 for the same order, -1 reversed, null under two shared', () => {
    expect(sharedRankCorrelation(['a', 'b', 'c'], ['a', 'b', 'c'])).toBe(1);
    expect(sharedRankCorrelation(['a', 'b', 'c'], ['c', 'b', 'a'])).toBe(-1);
    expect(sharedRankCorrelation(['a', 'x'], ['a', 'y'])).toBeNull();
    expect(sharedRankCorrelation([], [])).toBeNull();
  });
  it('ranks the shared products among themselves (other products in between do not count)', () => {
    // shared a, b, c: same relative order in both although b has other products before it
    expect(sharedRankCorrelation(['a', 'b', 'c', 'x'], ['y', 'a', 'z', 'b', 'c'])).toBe(1);
    // shared in order a,b,c vs b,a,c: d = (1,1,0) → 1 − 6·2/(3·8) = 0.5
    expect(sharedRankCorrelation(['a', 'b', 'c'], ['b', 'q', 'a', 'c'])).toBeCloseTo(0.5);
  });
});

describe('overlapOf', () => {
  it('gives every pair in the given order and the products all models share', () => {
    const o = overlapOf([
      { id: 'm1', productIds: ['a', 'b', 'c'] },
      { id: 'm2', productIds: ['c', 'a', 'd'] },
      { id: 'm3', productIds: ['a', 'e', 'c'] },
    ]);
    expect(o.pairs.map((p) => [p.a, p.b])).toEqual([
      ['m1', 'm2'],
      ['m1', 'm3'],
      ['m2', 'm3'],
    ]);
    expect(o.pairs[0]).toMatchObject({ shared: ['a', 'c'], jaccard: 0.5, rankCorrelation: -1 });
    expect(o.sharedByAll).toEqual(['a', 'c']);
  });
});
