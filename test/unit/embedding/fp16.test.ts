import { describe, expect, it } from 'vitest';
import { fromHalf, toHalf } from '../../../src/embedding/fp16.js';

describe('float16 conversion (for _fp16 model variants with half-precision I/O)', () => {
  it('round-trips representative values within half precision', () => {
    const xs = Float32Array.from([0, -0, 1, -1, 0.5, 0.1, -2.75, 65504, 1e-5, 6.1e-5, 3.14159, -0.333]);
    const back = fromHalf(toHalf(xs));
    // half precision: relative error ≤ 2⁻¹¹ for normal numbers, absolute ≤ 2⁻²⁵ for subnormals
    xs.forEach((x, i) => expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -11, 2 ** -25)));
    expect([...toHalf(Float32Array.from([1, -2, 65504]))]).toEqual([0x3c00, 0xc000, 0x7bff]);
  });

  it('maps overflow to infinity and keeps NaN', () => {
    const back = fromHalf(toHalf(Float32Array.from([1e6, -1e6, NaN])));
    expect(back[0]).toBe(Infinity);
    expect(back[1]).toBe(-Infinity);
    expect(Number.isNaN(back[2])).toBe(true);
  });
});
