import { describe, expect, it } from 'vitest';
import { classifyVector, labelPrompts, MAX_LABELS } from '../../../src/embedding/zero-shot.js';

function unit(values: number[]): Float32Array {
  const n = Math.hypot(...values);
  return Float32Array.from(values.map((v) => v / n));
}

describe('zero-shot labels', () => {
  it('puts each label into the template, once per label whatever its case', () => {
    const { labels, prompts } = labelPrompts([' Red ', 'blue', 'RED'], 'a photo of a {} bag');
    expect(labels).toEqual(['Red', 'blue']);
    expect(prompts).toEqual(['a photo of a Red bag', 'a photo of a blue bag']);
  });

  it.each([
    ['no labels', [], undefined],
    ['an empty label', ['red', '  '], undefined],
    ['a template without {}', ['red'], 'a photo'],
    ['more than MAX_LABELS', Array.from({ length: MAX_LABELS + 1 }, (_, i) => `label ${i}`), undefined],
  ])('refuses %s with BAD_USER_INPUT', (_name, labels, template) => {
    expect(() => labelPrompts(labels, template)).toThrow(expect.objectContaining({ code: 'BAD_USER_INPUT' }));
  });
});

describe('classifyVector', () => {
  it('scores each label by its cosine and the calibration formula, independently, most probable first', () => {
    const image = unit([1, 0.2, 0]);
    const set = { labels: ['a', 'b', 'c'], prompts: ['a', 'b', 'c'], vectors: [unit([0, 1, 0]), unit([1, 0, 0]), unit([1, 1, 0])] };
    const scale = 4.724453449249268;
    const bias = -16.771724700927734;
    const formula = (s: number) => 1 / (1 + Math.exp(-(Math.exp(scale) * s + bias)));
    const out = classifyVector(image, set, formula);
    expect(out.map((r) => r.label)).toEqual(['b', 'c', 'a']);
    for (const r of out) {
      const v = set.vectors[set.labels.indexOf(r.label)]!;
      const cos = image.reduce((s, x, i) => s + x * v[i]!, 0);
      expect(r.score).toBeCloseTo(cos, 6);
      expect(r.probability).toBeCloseTo(formula(cos), 9);
    }
    // independent per label: the probabilities are not a softmax, they need not sum to 1
    expect(out.reduce((s, r) => s + r.probability!, 0)).not.toBeCloseTo(1, 2);
  });

  it('keeps the order by cosine and null probabilities where the calibration is unknown', () => {
    const set = { labels: ['x', 'y'], prompts: ['x', 'y'], vectors: [unit([0, 1]), unit([1, 0])] };
    const out = classifyVector(unit([1, 0.1]), set, () => null);
    expect(out.map((r) => [r.label, r.probability])).toEqual([
      ['y', null],
      ['x', null],
    ]);
  });
});
