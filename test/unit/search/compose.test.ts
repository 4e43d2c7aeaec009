import { describe, expect, it } from 'vitest';
import { averageVectorQuery, bestScore, checkWeights, combineUnitVectors, MAX_QUERY_TERMS } from '../../../src/search/compose.js';

const v = (...xs: number[]) => Float32Array.from(xs);

describe('combineUnitVectors', () => {
  it('is the weighted sum of unit vectors, normalised (each term divided by its own length first)', () => {
    // (3,0) and (0,2) are the unit vectors (1,0) and (0,1) at other lengths: 1·(1,0) − 0.5·(0,1), normalised.
    const q = combineUnitVectors([v(3, 0), v(0, 2)], [1, -0.5]);
    const n = Math.hypot(1, 0.5);
    expect(q[0]).toBeCloseTo(1 / n, 6);
    expect(q[1]).toBeCloseTo(-0.5 / n, 6);
  });

  it("depends only on the weights' ratios", () => {
    const a = combineUnitVectors([v(1, 0, 0), v(0, 1, 0), v(0, 0, 1)], [2, 1, -1]);
    const b = combineUnitVectors([v(1, 0, 0), v(0, 1, 0), v(0, 0, 1)], [20, 10, -10]);
    a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 6));
  });

  it('refuses terms that cancel out with ZERO_VECTOR', () => {
    expect(() => combineUnitVectors([v(0.6, 0.8), v(0.6, 0.8)], [1, -1])).toThrow(
      expect.objectContaining({ code: 'BAD_USER_INPUT', details: expect.objectContaining({ reason: 'ZERO_VECTOR' }) }),
    );
  });
});

describe('checkWeights', () => {
  it.each([
    ['no terms', [], 'EMPTY_TERMS'],
    ['every weight 0', [0, 0], 'ZERO_WEIGHTS'],
    ['too many terms', Array.from({ length: MAX_QUERY_TERMS + 1 }, () => 1), 'TOO_MANY_TERMS'],
  ])('refuses %s', (_name, weights, reason) => {
    expect(() => checkWeights(weights)).toThrow(expect.objectContaining({ details: expect.objectContaining({ reason }) }));
  });
  it('refuses a weight that is not finite or over 100', () => {
    expect(() => checkWeights([1, Number.NaN])).toThrow(expect.objectContaining({ code: 'BAD_USER_INPUT' }));
    expect(() => checkWeights([-101])).toThrow(expect.objectContaining({ code: 'BAD_USER_INPUT' }));
    expect(() => checkWeights([1, 0, -100])).not.toThrow();
  });
});

describe('recommendation strategies', () => {
  it("AVERAGE_VECTOR is avg(positive) + (avg(positive) − avg(negative)), as Qdrant's", () => {
    const q = averageVectorQuery([v(1, 0, 0), v(0, 1, 0)], [v(0, 0, 1)]);
    // 2·(0.5, 0.5, 0) − (0, 0, 1) = (1, 1, −1), normalised
    const n = Math.sqrt(3);
    expect(Array.from(q).map((x) => +x.toFixed(6))).toEqual([1 / n, 1 / n, -1 / n].map((x) => +x.toFixed(6)));
    // without negatives: the positives' mean direction
    const p = averageVectorQuery([v(1, 0), v(0, 1)], []);
    expect(p[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(p[1]).toBeCloseTo(Math.SQRT1_2, 6);
  });

  it('BEST_SCORE is the best positive cosine, or −(best negative)² where a negative is strictly nearer', () => {
    expect(bestScore([0.2, 0.7], [0.5])).toBe(0.7);
    expect(bestScore([0.2, 0.4], [0.6, 0.1])).toBeCloseTo(-0.36, 12);
    expect(bestScore([0.5], [0.5])).toBe(0.5); // a tie is not a penalty
    expect(bestScore([0.3], [])).toBe(0.3);
    // a penalised candidate ranks after every one with a best positive cosine ≥ 0, the nearer a negative the lower
    expect(bestScore([0.5], [0.9])).toBeLessThan(bestScore([0], []));
    expect(bestScore([0.5], [0.9])).toBeLessThan(bestScore([0.5], [0.6]));
  });
});
