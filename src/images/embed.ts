/**
 * Encoded image bytes → the pixels an embedding model takes. Decoding (with the byte and pixel limits)
 * happens here, so embedding/ only ever sees bounded RGB; it squashes them to its input size itself
 * (Pillow-identical, which sharp's resize is not when upscaling).
 *
 * A photo larger than the model needs (a 12–200 MP phone photo for a 224×224 tower) is decoded at
 * DECODE_OVERSAMPLE × the model's input size where its format shrinks on load (decode.ts): the decode then
 * costs what the model needs, not what the camera took.
 */
import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import type { Embedder, RgbPixels } from '../embedding/index.js';
import { preprocessRgb } from '../embedding/preprocess.js';
import type { PreprocessSpec } from '../embedding/model-dir.js';
import { AppError, ErrorCode } from '../errors.js';
import type { RegionBox } from '../db/types.js';
import { DEFAULT_IMAGE_LIMITS, decodeImage, type ImageLimits, type ResizeSpec } from './decode.js';

/**
 * How many times the model's input size a shrunk decode keeps per axis. Against Pillow's resize of the
 * full image (libjpeg DCT scaling, libvips' linear reduce, then the Pillow-exact squash; photo-like JPEGs,
 * BILINEAR to 224): 2× measured 0.43–0.62 levels mean and 7–8 at p99 on 12, 24 and 50 MP, 2.5× 0.34–0.37
 * and 3–4 on 12 MP, 3× 0.16–0.21 and 1; 4× no better than 3×. DCT scaling that leaves too little for the
 * filters is too coarse (Pillow's own draft mode at 1/8 on 12 MP, then its resize to 224: 0.36 mean, p99
 * 5; at 1/4: 0.16, p99 1). At 3× and 224 px sharp decodes 12 MP at 1/2, 24 MP at 1/4, 50 MP at 1/8; 2.5–2.7×
 * (1/4 for 12 MP) saved ≤ 10 % of the CPU for twice the error, so 3× it is.
 * pillow.test.ts holds every phone size to 0.5 and 4 (3× with 384 px, BICUBIC and WebP: ≤ 0.27, ≤ 2).
 */
export const DECODE_OVERSAMPLE = 3;

/**
 * The smallest decoded size this model needs, per axis, or null for full resolution (a NaFlex model: its
 * patch grid follows the exact aspect ratio, which a shrunk decode rounds). With regions, enough pixels
 * that the smallest region's crop still has DECODE_OVERSAMPLE × the input size.
 */
export function decodeSizeFor(embedder: Pick<Embedder, 'inputSize' | 'info'>, regions: readonly RegionBox[] = []): ResizeSpec | null {
  if (embedder.info().naflex) return null;
  const { width, height } = embedder.inputSize();
  let fx = 1;
  let fy = 1;
  for (const r of regions) {
    fx = Math.min(fx, r.width);
    fy = Math.min(fy, r.height);
  }
  if (!(fx > 0 && fy > 0)) return null;
  return { width: Math.ceil((DECODE_OVERSAMPLE * width) / fx), height: Math.ceil((DECODE_OVERSAMPLE * height) / fy) };
}

// Bounds concurrent decodes (sharp works on the libuv pool) across all callers of this process.
const decodeLimit = pLimit(Math.max(2, availableParallelism()));

/** decodeForModel within this process's bound on concurrent decodes. */
export function decodeBounded(bytes: Buffer | Uint8Array, limits: ImageLimits, atLeast?: ResizeSpec | null): Promise<RgbPixels> {
  return decodeLimit(() => decodeForModel(bytes, limits, atLeast));
}

/**
 * Validates and decodes untrusted bytes: at full resolution (bounded by the pixel cap), or with `atLeast`
 * (decodeSizeFor) shrunk to that size where the format allows it (decode.ts).
 */
export async function decodeForModel(bytes: Buffer | Uint8Array, limits: ImageLimits, atLeast?: ResizeSpec | null): Promise<RgbPixels> {
  const img = await decodeImage(bytes, limits, undefined, atLeast);
  return { data: img.data, width: img.width, height: img.height };
}

/**
 * Decodes each image for the embedder, then embeds them, in input order. Rejects with INVALID_IMAGE /
 * IMAGE_TOO_LARGE carrying details.index of the first bad input (callers tell which product it was).
 */
export async function embedImageBytes(
  embedder: Embedder,
  buffers: Array<Buffer | Uint8Array>,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<Float32Array[]> {
  const atLeast = decodeSizeFor(embedder);
  const pixels = await Promise.all(
    buffers.map((b, index) =>
      decodeLimit(() => decodeForModel(b, limits, atLeast)).catch((err: unknown) => {
        if (err instanceof AppError) {
          throw new AppError(
            err.code,
            buffers.length > 1 ? `Image ${index}: ${err.message}` : err.message,
            { ...err.details, index },
            { cause: err.cause },
          );
        }
        throw new AppError(ErrorCode.INVALID_IMAGE, `Image ${index} could not be decoded`, { index }, { cause: err });
      }),
    ),
  );
  return embedder.embedImages(pixels);
}

/**
 * Decode + validate, then resize and normalise to a [3,S,S] float32 tensor (tests and benchmarks), with
 * the engine's shrunk decode (DECODE_OVERSAMPLE) unless `fullResolution`.
 */
export async function preprocessImage(
  bytes: Buffer | Uint8Array,
  spec: PreprocessSpec,
  limits: ImageLimits,
  opts: { fullResolution?: boolean } = {},
): Promise<Float32Array> {
  const atLeast =
    opts.fullResolution || spec.naflex ? null : { width: DECODE_OVERSAMPLE * spec.width, height: DECODE_OVERSAMPLE * spec.height };
  return preprocessRgb(await decodeForModel(bytes, limits, atLeast), spec);
}
