/**
 * The pure parts of catalog intelligence: duplicate pairs into groups (connected components named by their
 * lowest id, compared as numbers), a product's suggestions from several photos (a label's best photo), and
 * the taxonomy's checks.
 */
import { describe, expect, it } from 'vitest';
import { groupPairs } from '../../../src/db/duplicates.js';
import { checkTaxonomy, suggestFor } from '../../../src/jobs/tag.js';

describe('groupPairs', () => {
  it('connects chained pairs into one group named by its lowest id, compared as numbers', () => {
    const groups = groupPairs([
      { a: '10', b: '11', score: 0.99 },
      { a: '9', b: '11', score: 0.97 }, // '9' > '10' as text, < as a number
      { a: '20', b: '30', score: 0.95 },
    ]);
    expect([...groups.entries()].sort()).toEqual([
      ['20', ['20', '30']],
      ['9', ['9', '10', '11']],
    ]);
  });
  it('makes no group of no pairs', () => {
    expect(groupPairs([]).size).toBe(0);
  });
});

describe('suggestFor', () => {
  const v = (...xs: number[]) => Float32Array.from(xs);
  const set = { labels: ['red', 'blue', 'green'], prompts: [], vectors: [v(1, 0, 0), v(0, 1, 0), v(0, 0, 1)] };
  const sigmoid = (s: number) => 1 / (1 + Math.exp(-s));

  it('takes each label at its best photo, most probable first, at most three', () => {
    const product = { productId: '7', sku: 'S', vectors: [v(0.8, 0.6, 0), v(0, 0.28, 0.96)] };
    const s = suggestFor(product, set, sigmoid);
    expect(s.map((x) => [x.rank, x.label])).toEqual([
      [1, 'green'],
      [2, 'red'],
      [3, 'blue'],
    ]);
    expect(s[0]!.score).toBeCloseTo(0.96, 6);
    expect(s[2]!.score).toBeCloseTo(0.6, 6); // blue's best photo is the first (0.6 > 0.28)
    expect(s[0]!.probability).toBeCloseTo(sigmoid(0.96), 6);
  });
  it('suggests nothing without a calibration', () => {
    expect(suggestFor({ productId: '1', sku: 'S', vectors: [v(1, 0, 0)] }, set, () => null)).toEqual([]);
  });
});

describe('checkTaxonomy', () => {
  it('trims the attribute, dedupes labels, keeps the default template', () => {
    expect(checkTaxonomy({ attribute: ' colour ', labels: ['Red', 'red', 'blue'] })).toEqual({
      attribute: 'colour',
      labels: ['Red', 'blue'],
      template: 'a photo of {}',
      onlyMissing: false,
    });
  });
  it('refuses an empty or control-character attribute and a template without {}', () => {
    expect(() => checkTaxonomy({ attribute: '', labels: ['x'] })).toThrow(/attribute/);
    expect(() => checkTaxonomy({ attribute: 'a\u0000b', labels: ['x'] })).toThrow(/attribute/);
    expect(() => checkTaxonomy({ attribute: 'a', labels: ['x'], template: 'no placeholder' })).toThrow(/\{\}/);
  });
});
