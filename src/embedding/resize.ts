/**
 * Squash-resize of interleaved 8-bit RGB to W×H, bit for bit as Pillow's `Image.resize((W, H), resample)`
 * on an RGB image: the call the Hugging Face SigLIP processors make with the `resample` their
 * preprocessor_config.json names (SigLIP 2: 2 = BILINEAR; SigLIP v1: 3 = BICUBIC), hence the pixels the
 * model was trained and evaluated on.
 *
 * Why our own resize rather than sharp's: no npm library reproduces Pillow's resampling. sharp (libvips)
 * matches it closely when both dimensions shrink, but upsamples with another pixel-centre convention
 * (a 384×191 scan came out 8 levels mean, 60 at p99 away from Pillow), and small product crops and
 * screenshots are common inputs. This is Pillow's ImagingResample (libImaging/Resample.c), not an
 * approximation of it:
 *
 *  - separable: a horizontal pass into an 8-bit intermediate image, then a vertical pass (a pass whose size
 *    does not change is skipped, as Pillow skips it);
 *  - Pillow's convolution filters (libImaging/Resample.c): BOX (support ½), BILINEAR (triangle, 1),
 *    HAMMING (1), BICUBIC (a = −½, 2), LANCZOS (3); the support scaled by the reduction factor when
 *    downscaling (antialiasing), not scaled when upscaling; per output pixel the window
 *    [trunc(c − s + ½), trunc(c + s + ½)) around the centre c = (x + ½)·scale, weights normalised to sum 1
 *    (BICUBIC and LANCZOS weights can be negative: the sums overshoot and are clamped, as in Pillow);
 *  - weights in fixed point with 22 fractional bits (Pillow's PRECISION_BITS for 8-bit images), rounded
 *    half away from zero; each sum starts at ½ (1 << 21) and is shifted back and clamped to 0…255.
 *
 * Fast enough to run per query image: coefficients computed once per call (outSize × window), integer
 * weights in Int32Arrays, the vertical pass accumulates whole rows so memory is read in order.
 */

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** Per output pixel: first input index, and number of taps. */
  start: Int32Array;
  taps: Int32Array;
  /** ksize weights per output pixel (fixed point). */
  weights: Int32Array;
  ksize: number;
}

/** PIL's resample codes (Image.Resampling), as preprocessor_config.json's `resample` gives them. */
export const PIL_RESAMPLE = { NEAREST: 0, LANCZOS: 1, BILINEAR: 2, BICUBIC: 3, BOX: 4, HAMMING: 5 } as const;

interface Filter {
  support: number;
  weight: (x: number) => number;
}

const sinc = (x: number) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));

/** Pillow's filters (libImaging/Resample.c: box_filter, bilinear_filter, hamming_filter, bicubic_filter, lanczos_filter). */
const FILTERS: Record<number, Filter> = {
  [PIL_RESAMPLE.BOX]: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  [PIL_RESAMPLE.BILINEAR]: {
    support: 1,
    weight: (x) => {
      const t = x < 0 ? -x : x;
      return t < 1 ? 1 - t : 0;
    },
  },
  [PIL_RESAMPLE.HAMMING]: {
    support: 1,
    weight: (x) => {
      const t = x < 0 ? -x : x;
      if (t === 0) return 1;
      if (t >= 1) return 0;
      const p = t * Math.PI;
      return (Math.sin(p) / p) * (0.54 + 0.46 * Math.cos(p));
    },
  },
  [PIL_RESAMPLE.BICUBIC]: {
    support: 2,
    weight: (x) => {
      const a = -0.5; // Pillow's choice (Keys' cubic); some other libraries use −0.75
      const t = x < 0 ? -x : x;
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  [PIL_RESAMPLE.LANCZOS]: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

/** Whether `resample` names a filter this module reproduces (NEAREST is not a convolution in Pillow, and no SigLIP uses it). */
export function isSupportedResample(resample: number): boolean {
  return FILTERS[resample] !== undefined;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for one filter. */
function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const taps = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // (int) casts in C truncate toward zero
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const v = filter.weight((x + xmin - center + 0.5) * ss);
      w[x] = v;
      total += v;
    }
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const v = total !== 0 ? w[x]! / total : w[x]!;
      // (int)(±0.5 + v·2^22): round half away from zero
      weights[base + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[xx] = xmin;
    taps[xx] = xmax;
  }
  return { start, taps, weights, ksize };
}

const clip8 = (v: number) => {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : s > 255 ? 255 : s;
};

function horizontal(src: Uint8Array, w: number, h: number, outW: number, filter: Filter): Uint8Array {
  const { start, taps, weights, ksize } = coefficients(w, outW, filter);
  const out = new Uint8Array(outW * h * 3);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    let o = y * outW * 3;
    for (let xx = 0; xx < outW; xx++) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      const n = taps[xx]!;
      const kb = xx * ksize;
      let p = row + start[xx]! * 3;
      for (let x = 0; x < n; x++, p += 3) {
        const k = weights[kb + x]!;
        // int32 throughout: each sum stays below 2^31 (255 · Σ|w| · 2^22 + 2^21, Σ|w| < 1.3 for every filter)
        s0 = (s0 + src[p]! * k) | 0;
        s1 = (s1 + src[p + 1]! * k) | 0;
        s2 = (s2 + src[p + 2]! * k) | 0;
      }
      out[o++] = clip8(s0);
      out[o++] = clip8(s1);
      out[o++] = clip8(s2);
    }
  }
  return out;
}

function vertical(src: Uint8Array, w: number, h: number, outH: number, filter: Filter): Uint8Array {
  const { start, taps, weights, ksize } = coefficients(h, outH, filter);
  const rowLen = w * 3;
  const out = new Uint8Array(rowLen * outH);
  // integer sums below 2^31 (as in horizontal): int32 arithmetic is exact
  const acc = new Int32Array(rowLen);
  for (let yy = 0; yy < outH; yy++) {
    acc.fill(HALF);
    const n = taps[yy]!;
    const kb = yy * ksize;
    for (let y = 0; y < n; y++) {
      const k = weights[kb + y]!;
      const row = (start[yy]! + y) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] = (acc[i]! + src[row + i]! * k) | 0;
    }
    const o = yy * rowLen;
    for (let i = 0; i < rowLen; i++) out[o + i] = clip8(acc[i]!);
  }
  return out;
}

/**
 * Interleaved RGB (width × height × 3) → RGB at outWidth × outHeight, no crop, aspect ratio not kept:
 * Pillow's `Image.resize((outWidth, outHeight), resample)`, identical output.
 */
export function resizePillow(
  rgb: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  resample: number = PIL_RESAMPLE.BILINEAR,
): Uint8Array {
  const filter = FILTERS[resample];
  if (!filter) throw new Error(`resizePillow: unsupported PIL resample ${resample}`);
  if (!(width >= 1 && height >= 1 && outWidth >= 1 && outHeight >= 1)) throw new Error('resizePillow: sizes must be ≥ 1');
  if (rgb.length !== width * height * 3) throw new Error(`resizePillow: expected ${width * height * 3} bytes, got ${rgb.length}`);
  let img = rgb;
  if (outWidth !== width) img = horizontal(img, width, height, outWidth, filter);
  if (outHeight !== height) img = vertical(img, outWidth, height, outHeight, filter);
  return img === rgb ? rgb.slice() : img;
}

/** Pillow's `Image.resize((outWidth, outHeight), Image.BILINEAR)` (SigLIP 2's processors). */
export function resizeBilinear(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  return resizePillow(rgb, width, height, outWidth, outHeight, PIL_RESAMPLE.BILINEAR);
}
