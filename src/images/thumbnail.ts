/** Thumbnails for display, made once at ingest from validated bytes. */
import sharp from 'sharp';
import { AppError, ErrorCode } from '../errors.js';
import { FLATTEN_BACKGROUND, inspectImage, pixelCap, type ImageLimits } from './decode.js';

export const THUMBNAIL_SIZE = 256;

export interface Thumbnail {
  webp: Buffer;
  /** Format and size of the source image as its header declares them. */
  format: string;
  width: number;
  height: number;
}

export async function makeThumbnail(bytes: Buffer, limits: ImageLimits): Promise<Thumbnail> {
  // caps before any pixel is decoded; a phone photo shrinks on load (sharp's resize below), so it is held
  // to the scalable cap (decode.ts)
  const header = await inspectImage(bytes, limits, { scaled: true });
  try {
    const limitInputPixels = pixelCap(limits, header.shrinksOnLoad, bytes.length);
    const img = sharp(bytes, { limitInputPixels, failOn: 'error', pages: 1, autoOrient: true });
    const data = await img
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: FLATTEN_BACKGROUND })
      .webp({ quality: 80 })
      .toBuffer();
    return { webp: data, format: header.format, width: header.width, height: header.height };
  } catch (err) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'Image data is truncated or corrupt', { format: header.format }, { cause: err });
  }
}
