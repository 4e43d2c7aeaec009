/**
 * Validation and decoding of untrusted image bytes. Raw user bytes stop here: everything downstream
 * (embedding/) receives decoded, bounded RGB pixels.
 *
 * Order of defences:
 *  0. the magic bytes (sniff.ts): every byte source (base64, upload, import file, URL) reaches sharp only
 *     through inspectImage, and only as one of the accepted raster formats;
 *  1. byte cap (before sharp sees the data);
 *  2. header-only metadata read: unknown/corrupt format → INVALID_IMAGE; declared width × height over the
 *     pixel cap → IMAGE_TOO_LARGE, before any pixel is decoded (decompression bombs are refused here);
 *  3. decode with `limitInputPixels` (belt and braces) and `failOn: 'error'` (truncated or corrupt pixel
 *     data aborts instead of yielding a half-grey image); first frame only; EXIF orientation applied; alpha
 *     flattened onto white; converted to 8-bit sRGB with exactly three channels.
 */
import sharp, { type Metadata } from 'sharp';
import { AppError, ErrorCode } from '../errors.js';
import { looksLikeSvgOrXml, sniffImageType } from './sniff.js';

/**
 * libvips loaders a merchant's photo never needs (SVG, PDF, ImageMagick, libvips' own format, slides,
 * FITS, Matlab, raw camera, ...), blocked for the whole process at start (main.ts `serve`): a decoder that
 * is not there cannot be attacked. Everything is blocked, then the accepted formats unblocked, so a loader
 * added by a later libvips stays blocked too. In-process tools that render SVG (the demo's synthetic
 * catalog) do not call this.
 */
export const ALLOWED_LOADERS = [
  'VipsForeignLoadJpeg',
  'VipsForeignLoadPng',
  'VipsForeignLoadWebp',
  'VipsForeignLoadGif',
  'VipsForeignLoadNsgif', // libvips' GIF loader (libnsgif)
  'VipsForeignLoadHeif',
  'VipsForeignLoadTiff',
];

export function blockUnneededLoaders(): void {
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: ALLOWED_LOADERS });
}

export interface ImageLimits {
  /** Largest accepted encoded size in bytes. */
  maxImageBytes: number;
  /** Largest accepted width × height (of the first frame, before orientation). */
  maxImagePixels: number;
}

/** The defaults of IMAGE_MAX_BYTES and IMAGE_MAX_PIXELS (config.ts), for callers without a configuration. */
export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxImageBytes: 20 * 1024 * 1024, maxImagePixels: 40_000_000 };

export interface ResizeSpec {
  width: number;
  height: number;
}

export interface DecodedImage {
  /** Interleaved 8-bit RGB, row-major, length width*height*3. */
  data: Buffer;
  width: number;
  height: number;
  /** Size of the source image as declared in its header (before EXIF orientation and resize). */
  sourceWidth: number;
  sourceHeight: number;
  format: string;
}

/** Background used when flattening transparency (product shots on transparent backgrounds read as white). */
export const FLATTEN_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heif']);

/** Read header metadata only; throws INVALID_IMAGE / IMAGE_TOO_LARGE. Never decodes pixel data. */
export async function inspectImage(bytes: Buffer | Uint8Array, limits: ImageLimits) {
  if (!bytes || bytes.length === 0) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'Image is empty');
  }
  if (bytes.length > limits.maxImageBytes) {
    throw new AppError(ErrorCode.IMAGE_TOO_LARGE, `Image is ${bytes.length} bytes; the limit is ${limits.maxImageBytes}`, {
      bytes: bytes.length,
      maxImageBytes: limits.maxImageBytes,
    });
  }
  if (!sniffImageType(bytes)) {
    throw looksLikeSvgOrXml(bytes)
      ? new AppError(ErrorCode.INVALID_IMAGE, 'SVG is not accepted; use JPEG, PNG, WebP, GIF, AVIF, HEIF or TIFF', { reason: 'svg' })
      : new AppError(ErrorCode.INVALID_IMAGE, 'Image data is not a supported, readable image', { reason: 'not_an_image' });
  }
  let meta: Metadata;
  try {
    // limitInputPixels: false here so that an oversized header yields our own IMAGE_TOO_LARGE with sizes.
    meta = await sharp(bytes, { limitInputPixels: false, pages: 1, failOn: 'error' }).metadata();
  } catch (err) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'Image data is not a supported, readable image', undefined, { cause: err });
  }
  const format = meta.format ?? 'unknown';
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new AppError(ErrorCode.INVALID_IMAGE, `Unsupported image format: ${format}`, { format });
  }
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (!(width > 0 && height > 0)) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'Image declares no dimensions', { format });
  }
  if (width * height > limits.maxImagePixels) {
    throw new AppError(
      ErrorCode.IMAGE_TOO_LARGE,
      `Image is ${width}×${height} (${width * height} pixels); the limit is ${limits.maxImagePixels} pixels`,
      { width, height, maxImagePixels: limits.maxImagePixels },
    );
  }
  return { format, width, height };
}

/**
 * Validate and decode untrusted bytes to RGB. With `resize`, the image is squashed to exactly
 * width × height (no crop, aspect ratio not kept) with antialiased bilinear resampling
 * (sharp `kernel: 'linear'`, shrink-on-load disabled: measured closest to PIL's BILINEAR reduce).
 */
export async function decodeImage(bytes: Buffer | Uint8Array, limits: ImageLimits, resize?: ResizeSpec): Promise<DecodedImage> {
  const header = await inspectImage(bytes, limits);
  let pipeline = sharp(bytes, {
    limitInputPixels: limits.maxImagePixels,
    failOn: 'error',
    pages: 1,
    page: 0,
    autoOrient: true,
    sequentialRead: true,
  })
    .flatten({ background: FLATTEN_BACKGROUND })
    .toColourspace('srgb');
  if (resize) {
    pipeline = pipeline.resize(resize.width, resize.height, {
      fit: 'fill',
      kernel: 'linear',
      fastShrinkOnLoad: false,
    });
  }
  try {
    const { data, info } = await pipeline.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`unexpected decoded layout: ${info.width}x${info.height}x${info.channels}`);
    }
    return {
      data,
      width: info.width,
      height: info.height,
      sourceWidth: header.width,
      sourceHeight: header.height,
      format: header.format,
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) {
      throw new AppError(
        ErrorCode.IMAGE_TOO_LARGE,
        'Image exceeds the pixel limit',
        { maxImagePixels: limits.maxImagePixels },
        { cause: err },
      );
    }
    throw new AppError(ErrorCode.INVALID_IMAGE, 'Image data is truncated or corrupt', { format: header.format }, { cause: err });
  }
}
