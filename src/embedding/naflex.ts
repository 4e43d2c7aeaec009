/**
 * SigLIP 2 NaFlex image preprocessing, as Hugging Face's Siglip2ImageProcessor does it: keep the aspect
 * ratio (portrait fashion photos stay portrait), resize to the largest size whose patch grid fits
 * max_num_patches with each side a multiple of the patch size (at least one patch), Pillow BILINEAR
 * (resize.ts), rescale and normalise, cut into P×P patches in row-major patch order with each patch
 * flattened channels-last (y, x, c), pad to max_num_patches with zeros and a 0/1 mask.
 *
 * The graph takes pixel_values [B, N, 3·P·P], pixel_attention_mask [B, N] and spatial_shapes [B, 2]
 * (patch rows, patch columns). Pure functions: no I/O.
 */
import type { PreprocessSpec } from './model-dir.js';
import type { RgbImage } from './preprocess.js';
import { resizePillow } from './resize.js';

export interface NaflexSpec {
  patchSize: number;
  maxNumPatches: number;
}

/**
 * The target height and width: the processor's binary search over a scale factor (between 1e-6 and 100,
 * until the bracket is narrower than 1e-5), each side ceil(side·scale / P)·P and at least P, keeping the
 * largest scale whose grid has at most maxNumPatches patches. Same double arithmetic as the Python.
 */
export function naflexTargetSize(
  height: number,
  width: number,
  patchSize: number,
  maxNumPatches: number,
): { height: number; width: number } {
  const eps = 1e-5;
  const scaled = (scale: number, size: number) => Math.max(patchSize, Math.ceil((size * scale) / patchSize) * patchSize);
  let lo = eps / 10;
  let hi = 100.0;
  while (hi - lo >= eps) {
    const scale = (lo + hi) / 2;
    const patches = (scaled(scale, height) / patchSize) * (scaled(scale, width) / patchSize);
    if (patches <= maxNumPatches) lo = scale;
    else hi = scale;
  }
  return { height: scaled(lo, height), width: scaled(lo, width) };
}

export interface NaflexInput {
  /** [maxNumPatches, 3·P·P] float32, padded rows zero. */
  pixels: Float32Array;
  /** [maxNumPatches]: 1 for a real patch, 0 for padding. */
  mask: Uint8Array;
  rows: number;
  cols: number;
}

/** Decoded RGB of any size → NaFlex patches, mask and spatial shape. */
export function naflexPreprocess(img: RgbImage, spec: PreprocessSpec, naflex: NaflexSpec): NaflexInput {
  const P = naflex.patchSize;
  const N = naflex.maxNumPatches;
  const target = spec.doResize ? naflexTargetSize(img.height, img.width, P, N) : { height: img.height, width: img.width };
  const rows = Math.floor(target.height / P);
  const cols = Math.floor(target.width / P);
  if (rows * cols > N) throw new Error(`naflexPreprocess: ${rows}×${cols} patches exceed max_num_patches ${N} (do_resize is off)`);
  const data =
    target.width === img.width && target.height === img.height
      ? img.data
      : resizePillow(img.data, img.width, img.height, target.width, target.height, spec.resample);
  const scale = spec.doRescale ? spec.rescaleFactor : 1;
  const luts = [0, 1, 2].map((c) => {
    const mean = spec.doNormalize ? spec.mean[c]! : 0;
    const std = spec.doNormalize ? spec.std[c]! : 1;
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(v * scale) - mean) / std;
    return lut;
  });
  const D = 3 * P * P;
  const pixels = new Float32Array(N * D);
  const mask = new Uint8Array(N);
  const W = target.width;
  for (let pr = 0; pr < rows; pr++) {
    for (let pc = 0; pc < cols; pc++) {
      const n = pr * cols + pc;
      mask[n] = 1;
      let o = n * D;
      for (let y = 0; y < P; y++) {
        let src = ((pr * P + y) * W + pc * P) * 3;
        for (let x = 0; x < P; x++) {
          pixels[o++] = luts[0]![data[src++]!]!;
          pixels[o++] = luts[1]![data[src++]!]!;
          pixels[o++] = luts[2]![data[src++]!]!;
        }
      }
    }
  }
  return { pixels, mask, rows, cols };
}
