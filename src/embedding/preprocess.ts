/**
 * Image preprocessing driven by preprocessor_config.json (SigLIP FixRes): squash to S×S exactly as
 * Pillow does with the config's `resample` (resize.ts: BILINEAR for SigLIP 2, BICUBIC for SigLIP v1; no crop), rescale by 1/255, normalise with mean/std (0.5),
 * channels-first RGB. Pure functions on decoded pixels: decoding and validation of the untrusted bytes
 * happen in images/ (decode.ts, embed.ts).
 */
import type { PreprocessSpec } from './model-dir.js';
import { resizePillow } from './resize.js';

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

/** Decoded 8-bit RGB, interleaved (what images/decode hands over). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Full-resolution RGB → the model's S×S input pixels, Pillow-identical with the config's filter (resize.ts). The squash happens
 * whenever the sizes differ: with do_resize=false a non-matching input could not feed a fixed-size graph.
 */
export function resizeForModel(img: RgbImage, spec: PreprocessSpec): Uint8Array {
  if (img.width === spec.width && img.height === spec.height) return img.data;
  return resizePillow(img.data, img.width, img.height, spec.width, spec.height, spec.resample);
}

/** Decoded RGB → resized and normalised [3,S,S] float32 tensor. Pure: no I/O, no sharp. */
export function preprocessRgb(img: RgbImage, spec: PreprocessSpec): Float32Array {
  return rgbToTensor(resizeForModel(img, spec), spec.width, spec.height, spec);
}
