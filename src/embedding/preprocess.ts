/**
 * Image preprocessing driven by preprocessor_config.json (SigLIP 2 FixRes): squash to S×S with antialiased
 * bilinear resampling (no crop), rescale by 1/255, normalise with mean/std (0.5), channels-first RGB.
 * Decoding and validation of the untrusted bytes happens in images/decode.ts.
 */
import { decodeImage, type ImageLimits } from '../images/decode.js';
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

/** Decode + validate (images/) then resize and normalise to a [3,S,S] float32 tensor. */
export async function preprocessImage(bytes: Buffer | Uint8Array, spec: PreprocessSpec, limits: ImageLimits): Promise<Float32Array> {
  const img = await decodeImage(bytes, limits, spec.doResize ? { width: spec.width, height: spec.height } : undefined);
  if (img.width !== spec.width || img.height !== spec.height) {
    // do_resize=false with a non-matching input cannot feed a fixed-size graph
    const resized = await decodeImage(bytes, limits, { width: spec.width, height: spec.height });
    return rgbToTensor(resized.data, resized.width, resized.height, spec);
  }
  return rgbToTensor(img.data, img.width, img.height, spec);
}
