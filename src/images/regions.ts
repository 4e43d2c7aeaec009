/**
 * Regions of interest (issue 22): a box given as fractions of an image, cut out of the decoded pixels so
 * that it is embedded as its own image (Product Search's bounding polys; the bag in a street photo).
 * The crop is a row copy of the decoded RGB buffer rather than a second sharp pipeline: the image is
 * decoded once for the whole photo and all its regions.
 */
import type { Embedder, RgbPixels } from '../embedding/index.js';
import type { RegionBox } from '../db/types.js';
import { AppError, ErrorCode } from '../errors.js';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from './decode.js';
import { decodeBounded, decodeSizeFor } from './embed.js';

/** The box in whole pixels of a width × height image: at least one pixel, inside the image. */
export function regionPixels(box: RegionBox, width: number, height: number): { left: number; top: number; width: number; height: number } {
  const left = Math.min(width - 1, Math.max(0, Math.floor(box.x * width)));
  const top = Math.min(height - 1, Math.max(0, Math.floor(box.y * height)));
  const right = Math.max(left + 1, Math.min(width, Math.ceil((box.x + box.width) * width)));
  const bottom = Math.max(top + 1, Math.min(height, Math.ceil((box.y + box.height) * height)));
  return { left, top, width: right - left, height: bottom - top };
}

export function cropPixels(image: RgbPixels, box: RegionBox): RgbPixels {
  const r = regionPixels(box, image.width, image.height);
  const data = new Uint8Array(r.width * r.height * 3);
  for (let y = 0; y < r.height; y++) {
    const from = ((r.top + y) * image.width + r.left) * 3;
    data.set(image.data.subarray(from, from + r.width * 3), y * r.width * 3);
  }
  return { data, width: r.width, height: r.height };
}

/** One image to embed: its bytes, and the regions whose crops are embedded too. */
export interface PhotoToEmbed {
  bytes: Buffer | Uint8Array;
  regions: readonly RegionBox[];
}

/**
 * Decodes each photo once and embeds the whole photo and each region's crop, in one call to the engine.
 * Returns per photo [whole, region 1, region 2, …]. Rejects with INVALID_IMAGE / IMAGE_TOO_LARGE carrying
 * details.index of the first bad photo (callers tell which product and image it was).
 */
export async function embedPhotos(
  embedder: Embedder,
  photos: readonly PhotoToEmbed[],
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<Float32Array[][]> {
  const out: Float32Array[][] = [];
  // A few photos at a time: decoded full-resolution pixels of a whole upsert (500 products × 12 photos)
  // are never held at once.
  for (let start = 0; start < photos.length; start += PHOTOS_PER_CALL) {
    out.push(...(await embedChunk(embedder, photos, start, Math.min(photos.length, start + PHOTOS_PER_CALL), limits)));
  }
  return out;
}

const PHOTOS_PER_CALL = 16;

async function embedChunk(
  embedder: Embedder,
  photos: readonly PhotoToEmbed[],
  from: number,
  to: number,
  limits: ImageLimits,
): Promise<Float32Array[][]> {
  const chunk = photos.slice(from, to);
  const decoded = await Promise.all(
    chunk.map((p, n) => {
      const index = from + n;
      return decodeBounded(p.bytes, limits, decodeSizeFor(embedder, p.regions)).catch((err: unknown) => {
        if (err instanceof AppError) {
          throw new AppError(
            err.code,
            photos.length > 1 ? `Image ${index}: ${err.message}` : err.message,
            { ...err.details, index },
            { cause: err.cause },
          );
        }
        throw new AppError(ErrorCode.INVALID_IMAGE, `Image ${index} could not be decoded`, { index }, { cause: err });
      });
    }),
  );
  const pixels: RgbPixels[] = [];
  decoded.forEach((whole, n) => {
    pixels.push(whole);
    for (const box of chunk[n]!.regions) pixels.push(cropPixels(whole, box));
  });
  const vectors = await embedder.embedImages(pixels);
  let at = 0;
  return chunk.map((p) => {
    const mine = vectors.slice(at, at + 1 + p.regions.length);
    at += 1 + p.regions.length;
    return mine;
  });
}
