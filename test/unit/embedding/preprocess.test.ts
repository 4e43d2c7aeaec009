import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../src/images/decode.js';
import { parsePreprocessorConfig } from '../../../src/embedding/model-dir.js';
import { rgbToTensor } from '../../../src/embedding/preprocess.js';
import { preprocessImage } from '../../../src/images/embed.js';
import { meanAbsDiff, pilBilinearResize } from '../../../bench/embedding/pil-bilinear.js';
import { fromRaw, solid } from './helpers.js';

const limits = { maxImageBytes: 20 * 1024 * 1024, maxImagePixels: 40_000_000 };
const siglip = (S: number) =>
  parsePreprocessorConfig({
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
    resample: 2,
    rescale_factor: 0.00392156862745098,
    size: { height: S, width: S },
  });
const n = (v: number) => Math.fround((v / 255 - 0.5) / 0.5);

describe('preprocessing (SigLIP 2, driven by preprocessor_config.json)', () => {
  it('produces the exact CHW tensor for a hand-made 2×2 image (no resize needed)', async () => {
    // row-major RGB: red, green / blue, white
    const raw = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    const t = await preprocessImage(await fromRaw(raw, 2, 2, 'png'), siglip(2), limits);
    // channel planes R, G, B each in row-major order
    expect([...t]).toEqual([1, -1, -1, 1, -1, 1, -1, 1, -1, -1, 1, 1].map((v) => Math.fround(v)));
  });

  it('produces exact values for a uniform image of any size (resampling preserves constants)', async () => {
    const t = await preprocessImage(await solid(123, 45, [51, 102, 204]), siglip(8), limits);
    expect(t.length).toBe(3 * 64);
    expect(t[0]).toBeCloseTo(n(51), 6);
    expect(t[64 + 17]).toBeCloseTo(n(102), 6);
    expect(t[128 + 63]).toBeCloseTo(n(204), 6);
  });

  it('squashes a non-square image to S×S without cropping', async () => {
    // 90×30: three vertical bands red | green | blue. A centre crop would see green only.
    const w = 90,
      h = 30;
    const raw = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw[(y * w + x) * 3 + Math.floor(x / 30)] = 255;
    const S = 6;
    const t = await preprocessImage(await fromRaw(raw, w, h, 'png'), siglip(S), limits);
    const px = (c: number, y: number, x: number) => t[c * S * S + y * S + x]!;
    for (let y = 0; y < S; y++) {
      expect(px(0, y, 0)).toBeCloseTo(1, 5); // left column pure red
      expect(px(1, y, 0)).toBeCloseTo(-1, 5);
      expect(px(2, y, S - 1)).toBeCloseTo(1, 5); // right column pure blue
      expect(px(1, y, S - 1)).toBeCloseTo(-1, 5);
    }
    // and the bytes match an independent PIL-style antialiased bilinear resize closely
    const ours = await decodeImage(await fromRaw(raw, w, h, 'png'), limits, { width: S, height: S });
    const ref = pilBilinearResize(raw, w, h, S, S);
    expect(meanAbsDiff(ours.data, ref)).toBeLessThan(3);
  });

  it('tracks an independent PIL-style resize on a detailed, downscaled photo-like image', async () => {
    const w = 400,
      h = 300;
    const raw = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 3;
        raw[i] = (x * 255) / w;
        raw[i + 1] = 128 + 100 * Math.sin(x / 9) * Math.cos(y / 13);
        raw[i + 2] = (x ^ y) & 32 ? 220 : 30;
      }
    const ours = await decodeImage(await fromRaw(raw, w, h, 'png'), limits, { width: 32, height: 32 });
    const ref = pilBilinearResize(raw, w, h, 32, 32);
    expect(meanAbsDiff(ours.data, ref)).toBeLessThan(2);
  });

  it('rgbToTensor honours rescale/normalise settings from the config', () => {
    const spec = {
      ...siglip(1),
      mean: [0.48, 0.46, 0.41] as [number, number, number],
      std: [0.27, 0.26, 0.28] as [number, number, number],
    };
    const t = rgbToTensor(Uint8Array.from([255, 0, 128]), 1, 1, spec);
    expect(t[0]).toBeCloseTo((1 - 0.48) / 0.27, 5);
    expect(t[1]).toBeCloseTo((0 - 0.46) / 0.26, 5);
    expect(t[2]).toBeCloseTo((128 / 255 - 0.41) / 0.28, 5);
    const noNorm = rgbToTensor(Uint8Array.from([255, 0, 128]), 1, 1, { ...spec, doNormalize: false, doRescale: false });
    expect([...noNorm]).toEqual([255, 0, 128]);
  });

  it('refuses a config asking for a centre crop (not SigLIP 2)', () => {
    expect(() => parsePreprocessorConfig({ size: { height: 224, width: 224 }, do_center_crop: true })).toThrow(/center_crop/);
  });
});
