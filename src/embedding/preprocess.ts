/**
 * Image preprocessing driven by preprocessor_config.json (SigLIP 2 FixRes): squash to S×S with antialiased
 * bilinear resampling (no crop), rescale by 1/255, normalise with mean/std (0.5), channels-first RGB.
 * Decoding, validation and the resize of the untrusted bytes happen in images/ (decode.ts, embed.ts).
 */
import type { PreprocessSpec } from './model-dir.js';

/** Interleaved 8-bit RGB (H×W×3) → float32 CHW normalised tensor, written into `out` at `offset`. */
export function rgbToTensor(
  rgb: Uint8Array,
  width: number,
  height: number,
  spec: PreprocessSpec,
  out: Float32Array = new Float32Array(3 * width * height),
  offset = 0,
): Float32Array {
  const plane = width * height;
  if (rgb.length !== plane * 3) throw new Error(`rgbToTensor: expected ${plane * 3} bytes, got ${rgb.length}`);
  const scale = spec.doRescale ? spec.rescaleFactor : 1;
  for (let c = 0; c < 3; c++) {
    const mean = spec.doNormalize ? spec.mean[c]! : 0;
    const std = spec.doNormalize ? spec.std[c]! : 1;
    // precomputed lookup: 256 possible byte values per channel
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(v * scale) - mean) / std;
    const base = offset + c * plane;
    for (let i = 0, j = c; i < plane; i++, j += 3) out[base + i] = lut[rgb[j]!]!;
  }
  return out;
}
