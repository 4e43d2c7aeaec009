/**
 * NaFlex preprocessing (src/embedding/naflex.ts) against Siglip2ImageProcessor's rules. The target sizes
 * below were computed with the processor's own algorithm (get_image_size_for_max_num_patches) in Python.
 */
import { describe, expect, it } from 'vitest';
import { naflexPreprocess, naflexTargetSize } from '../../../src/embedding/naflex.js';
import { parsePreprocessorConfig } from '../../../src/embedding/model-dir.js';
import { resizeBilinear } from '../../../src/embedding/resize.js';

describe('naflexTargetSize', () => {
  it.each([
    [1000, 500, 16, 256, 352, 176],
    [640, 480, 16, 256, 288, 224],
    [224, 224, 16, 256, 256, 256],
    [3000, 1000, 16, 1024, 864, 288],
    [10, 4000, 16, 256, 16, 4096],
    [7, 7, 16, 256, 256, 256],
    [1280, 853, 16, 576, 464, 304],
    [33, 47, 8, 64, 56, 72],
  ])('%i×%i (h×w), P=%i, max %i → %i×%i', (h, w, p, m, th, tw) => {
    const t = naflexTargetSize(h, w, p, m);
    expect(t).toEqual({ height: th, width: tw });
    expect((t.height / p) * (t.width / p)).toBeLessThanOrEqual(m);
  });
});

describe('naflexPreprocess', () => {
  const spec = parsePreprocessorConfig({
    image_processor_type: 'Siglip2ImageProcessor',
    patch_size: 4,
    max_num_patches: 16,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
  });

  it('reads the NaFlex processor config', () => {
    expect(spec.naflex).toEqual({ patchSize: 4, maxNumPatches: 16 });
  });

  it('keeps the aspect ratio, cuts row-major patches flattened (y, x, c), pads with a mask', () => {
    // a 6 wide × 12 high portrait
    const w = 6;
    const h = 12;
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 256;
    const target = naflexTargetSize(h, w, 4, 16);
    const out = naflexPreprocess({ data: rgb, width: w, height: h }, spec, spec.naflex!);
    expect(out.rows * 4).toBe(target.height);
    expect(out.cols * 4).toBe(target.width);
    expect(out.rows).toBeGreaterThan(out.cols); // portrait stays portrait
    expect([...out.mask].filter((m) => m === 1).length).toBe(out.rows * out.cols);
    expect([...out.mask.subarray(out.rows * out.cols)].every((m) => m === 0)).toBe(true);
    expect(out.pixels.length).toBe(16 * 48);
    expect(out.pixels.subarray(out.rows * out.cols * 48).every((v) => v === 0)).toBe(true);
    // patch (1, 1) pixel (y=2, x=3) channel 2 is resized pixel (row 6, col 7) normalised
    const resized = resizeBilinear(rgb, w, h, target.width, target.height);
    const n = 1 * out.cols + 1;
    const v = resized[((1 * 4 + 2) * target.width + (1 * 4 + 3)) * 3 + 2]!;
    expect(out.pixels[n * 48 + (2 * 4 + 3) * 3 + 2]).toBeCloseTo((v / 255 - 0.5) / 0.5, 6);
  });
});
