/**
 * Encoded image bytes → the pixels an embedding model takes. Decoding (with the byte and pixel limits)
 * happens here, so embedding/ only ever sees bounded RGB; it squashes them to its input size itself
 * (Pillow-identical, which sharp's resize is not when upscaling).
 */
import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import type { Embedder, RgbPixels } from '../embedding/index.js';
import { preprocessRgb } from '../embedding/preprocess.js';
import type { PreprocessSpec } from '../embedding/model-dir.js';
import { AppError, ErrorCode } from '../errors.js';
import { DEFAULT_IMAGE_LIMITS, decodeImage, type ImageLimits } from './decode.js';

// Bounds concurrent decodes (sharp works on the libuv pool) across all callers of this process.
const decodeLimit = pLimit(Math.max(2, availableParallelism()));

/** decodeForModel within this process's bound on concurrent decodes. */
export function decodeBounded(bytes: Buffer | Uint8Array, limits: ImageLimits): Promise<RgbPixels> {
  return decodeLimit(() => decodeForModel(bytes, limits));
}

/** Validates and decodes untrusted bytes at full resolution (bounded by the pixel cap). */
export async function decodeForModel(bytes: Buffer | Uint8Array, limits: ImageLimits): Promise<RgbPixels> {
  const img = await decodeImage(bytes, limits);
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
  const pixels = await Promise.all(
    buffers.map((b, index) =>
      decodeLimit(() => decodeForModel(b, limits)).catch((err: unknown) => {
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

/** Decode + validate, then resize and normalise to a [3,S,S] float32 tensor (tests and benchmarks). */
export async function preprocessImage(bytes: Buffer | Uint8Array, spec: PreprocessSpec, limits: ImageLimits): Promise<Float32Array> {
  return preprocessRgb(await decodeForModel(bytes, limits), spec);
}
