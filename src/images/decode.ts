/**
 * Validation and decoding of untrusted image bytes. Raw user bytes stop here: everything downstream
 * (embedding/) receives decoded, bounded RGB pixels.
 *
 * Order of defences:
 *  0. the magic bytes (sniff.ts): every byte source (base64, upload, import file, URL) reaches sharp only
 *     through inspectImage, and only as one of the accepted raster formats;
 *  1. byte cap (before sharp sees the data);
 *  2. header-only metadata read: unknown/corrupt format → INVALID_IMAGE; declared width × height over the
 *     cap that applies (below) → IMAGE_TOO_LARGE, before any pixel is decoded (decompression bombs are
 *     refused here);
 *  3. decode with `limitInputPixels` (belt and braces) and `failOn: 'error'` (truncated or corrupt pixel
 *     data aborts instead of yielding a half-grey image); first frame only; EXIF orientation applied; alpha
 *     flattened onto white; converted to 8-bit sRGB with exactly three channels.
 *
 * Which pixel cap applies (issue 23: a 24 MP phone photo was refused, though the model needs 224×224):
 *  - a caller that needs fewer pixels than the photo has (`atLeast`, the embedding path) and a format that
 *    shrinks while it loads (`shrinksOnLoad`: baseline JPEG, through libjpeg's DCT scaling to 1/2, 1/4 or
 *    1/8; lossy WebP without alpha or animation, through libwebp's scaled decoding) never holds the full
 *    image in memory: its decoding costs entropy decoding of the bytes plus the small scaled image. There
 *    the cap is `maxScalablePixels` (default 268 MP: WebP's own 16383² limit, and a 200 MP phone's
 *    16320×12240), and a bomb guard: above `maxImagePixels`, a header may declare at most
 *    MAX_DECLARED_PIXELS_PER_BYTE pixels per byte of the file, so the work stays proportional to the
 *    bytes sent (a flat 200 MP JPEG, the cheapest to send, measured 110–350 ms of CPU to decode at 1/8);
 *    and what the decoder produces at its scale (planShrink) is held to `maxImagePixels` like a full decode;
 *  - everything else is decoded at full resolution (PNG, GIF, TIFF, AVIF/HEIF, progressive JPEG, whose
 *    decoder keeps every DCT coefficient of the image, lossless or alpha or animated WebP, whose decoder
 *    keeps the whole image) and keeps `maxImagePixels`.
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
  /** Largest accepted width × height (of the first frame, before orientation) of an image decoded at full resolution. */
  maxImagePixels: number;
  /**
   * Largest accepted width × height of an image that shrinks while it loads (baseline JPEG, lossy WebP)
   * for a caller that needs fewer pixels; DEFAULT_SCALABLE_PIXELS when absent.
   */
  maxScalablePixels?: number;
}

/** IMAGE_MAX_SCALABLE_PIXELS' default: 16384², above WebP's 16383² limit and a 200 MP phone's 16320×12240. */
export const DEFAULT_SCALABLE_PIXELS = 16384 * 16384;

/**
 * Bomb guard for images over maxImagePixels that shrink on load: declared pixels per byte of the file.
 * Photos measure 3–15 pixels per byte; a JPEG of one flat colour, every block nothing but its DC value,
 * measured 170 (4:2:0 chroma) and 85 (4:4:4) with libjpeg-turbo at quality 80 and 95, 12 and 200 MP.
 */
export const MAX_DECLARED_PIXELS_PER_BYTE = 64;

/** The defaults of IMAGE_MAX_BYTES and IMAGE_MAX_PIXELS (config.ts), for callers without a configuration. */
export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  maxImageBytes: 20 * 1024 * 1024,
  maxImagePixels: 40_000_000,
  maxScalablePixels: DEFAULT_SCALABLE_PIXELS,
};

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

/** What inspectImage learnt from the header. */
export interface ImageHeader {
  format: string;
  /** Declared size of the first frame, before EXIF orientation. */
  width: number;
  height: number;
  /** Whether the decoder can produce a smaller image without holding the full one (see the file comment). */
  shrinksOnLoad: boolean;
  /** EXIF orientation (1–8; 1 when absent). */
  orientation: number;
}

/**
 * The chunk that holds a WebP's image: 'VP8 ' (lossy), 'VP8L' (lossless), or for the extended format
 * (VP8X) the same after its flags, with alpha or animation reported as such. RIFF layout: "RIFF", size,
 * "WEBP", then chunks of fourcc + little-endian size + data (padded to even).
 */
function webpKind(buf: Uint8Array): 'lossy' | 'lossless' | 'alpha' | 'animated' | 'unknown' {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = 12;
  while (at + 8 <= view.length) {
    const fourcc = view.toString('latin1', at, at + 4);
    const size = view.readUInt32LE(at + 4);
    if (fourcc === 'VP8 ') return 'lossy';
    if (fourcc === 'VP8L') return 'lossless';
    if (fourcc === 'ALPH') return 'alpha';
    if (fourcc === 'ANIM' || fourcc === 'ANMF') return 'animated';
    if (fourcc === 'VP8X' && at + 9 <= view.length) {
      const flags = view[at + 8]!;
      if (flags & 0x02) return 'animated';
      if (flags & 0x10) return 'alpha';
    }
    at += 8 + size + (size & 1);
  }
  return 'unknown';
}

function shrinksOnLoad(bytes: Uint8Array, meta: Metadata): boolean {
  if (meta.format === 'jpeg') return !meta.isProgressive;
  if (meta.format === 'webp') return (meta.pages ?? 1) === 1 && webpKind(bytes) === 'lossy';
  return false;
}

/** The pixel cap for this header: maxImagePixels, or for a shrinking decode the scalable cap and the bomb guard. */
export function pixelCap(limits: ImageLimits, scaled: boolean, bytes: number): number {
  if (!scaled) return limits.maxImagePixels;
  const ceiling = limits.maxScalablePixels ?? DEFAULT_SCALABLE_PIXELS;
  return Math.max(limits.maxImagePixels, Math.min(ceiling, bytes * MAX_DECLARED_PIXELS_PER_BYTE));
}

export interface InspectOptions {
  /**
   * The caller decodes to a smaller size (decodeImage's atLeast): an image that shrinks on load is held
   * to maxScalablePixels and the bomb guard instead of maxImagePixels.
   */
  scaled?: boolean;
}

/** Read header metadata only; throws INVALID_IMAGE / IMAGE_TOO_LARGE. Never decodes pixel data. */
export async function inspectImage(bytes: Buffer | Uint8Array, limits: ImageLimits, opts: InspectOptions = {}): Promise<ImageHeader> {
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
  const shrinks = shrinksOnLoad(bytes, meta);
  const cap = pixelCap(limits, opts.scaled === true && shrinks, bytes.length);
  if (width * height > cap) {
    throw new AppError(
      ErrorCode.IMAGE_TOO_LARGE,
      `Image is ${width}×${height} (${width * height} pixels); the limit is ${cap} pixels` +
        (cap === limits.maxImagePixels && opts.scaled && !shrinks ? ` for ${format} that is not baseline JPEG or lossy WebP` : ''),
      { width, height, maxImagePixels: cap },
    );
  }
  return { format, width, height, shrinksOnLoad: shrinks, orientation: meta.orientation ?? 1 };
}

/**
 * Validate and decode untrusted bytes to RGB.
 *
 * With `resize`, the image is squashed to exactly width × height (no crop, aspect ratio not kept) with
 * antialiased bilinear resampling (sharp `kernel: 'linear'`, shrink-on-load disabled: measured closest to
 * PIL's BILINEAR reduce).
 *
 * With `atLeast` (the embedding path), an image that shrinks on load and is larger than atLeast on an axis
 * is decoded smaller, to min(its size, atLeast) on each axis (aspect ratio not kept; after EXIF
 * orientation): libjpeg's DCT scaling or libwebp's scaled decoding to the nearest size above, then
 * libvips' antialiased linear reduce. The caller squashes that Pillow-exactly to the model's size, and
 * from 3× the model's size the chain measured within 0.16–0.27 levels mean, ≤ 2 at p99, of Pillow's
 * resize of the full image on 12–50 MP photos (pillow.test.ts; DECODE_OVERSAMPLE in embed.ts). Other
 * images are decoded at full resolution.
 */
export async function decodeImage(
  bytes: Buffer | Uint8Array,
  limits: ImageLimits,
  resize?: ResizeSpec,
  atLeast?: ResizeSpec | null,
): Promise<DecodedImage> {
  const header = await inspectImage(bytes, limits, { scaled: !!atLeast });
  const scaled = !!atLeast && header.shrinksOnLoad;
  let pipeline = sharp(bytes, {
    limitInputPixels: pixelCap(limits, scaled, bytes.length),
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
  } else if (scaled && atLeast) {
    const plan = planShrink(header, atLeast, limits.maxImagePixels);
    if ('loadedPixels' in plan) {
      // what the decoder itself produces before the reduce is what the decode costs: held to the
      // full-decode cap even at libjpeg's coarsest scale
      throw new AppError(
        ErrorCode.IMAGE_TOO_LARGE,
        `Image is ${header.width}×${header.height}; at the smallest scale its decoder allows it is still ${plan.loadedPixels} pixels, over the limit of ${limits.maxImagePixels}`,
        { width: header.width, height: header.height, maxImagePixels: limits.maxImagePixels },
      );
    }
    if (plan.target)
      pipeline = pipeline.resize(plan.target.width, plan.target.height, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: true });
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

/**
 * The size to decode to for atLeast (in displayed orientation): min(source, atLeast) per axis, or null
 * for the image as it is. What the decoder produces on the way is held to maxLoadedPixels: libjpeg's
 * scales are 1/2, 1/4 and 1/8 only, and sharp picks one only once the shrink passes it by one (a 24 MP
 * photo for a 512 px model, 3 × 512 = 1536, has a shrink of 2.79 and would decode whole; a small region
 * of a 200 MP photo asks for more than the photo has), so past the cap the target gets smaller until the
 * next scale fits. `loadedPixels` when even 1/8 does not fit.
 */
export function planShrink(
  header: Pick<ImageHeader, 'format' | 'width' | 'height' | 'orientation'>,
  atLeast: ResizeSpec,
  maxLoadedPixels = Infinity,
): { target: ResizeSpec | null } | { loadedPixels: number } {
  // EXIF orientations 5–8 swap the axes
  const [w, h] = header.orientation >= 5 ? [header.height, header.width] : [header.width, header.height];
  const wanted = { width: Math.min(w, atLeast.width), height: Math.min(h, atLeast.height) };
  const loaded = shrunkOnLoadPixels(header, wanted);
  if (loaded <= maxLoadedPixels) return { target: wanted.width === w && wanted.height === h ? null : wanted };
  for (const f of [2, 4, 8]) {
    const t = {
      width: Math.max(1, Math.min(wanted.width, Math.floor(w / (f + 1)))),
      height: Math.max(1, Math.min(wanted.height, Math.floor(h / (f + 1)))),
    };
    if (shrunkOnLoadPixels(header, t) <= maxLoadedPixels) return { target: t };
  }
  return { loadedPixels: loaded };
}

/**
 * The pixels the decoder produces on the way to `target`: sharp (pipeline.cc) shrinks a JPEG on load by
 * the largest of 8, 4, 2 that the common shrink min(w/tw, h/th) reaches, halved when the shrink's integer
 * part equals it (libjpeg rounds sizes up); a WebP decodes at exactly the common shrink.
 */
export function shrunkOnLoadPixels(header: Pick<ImageHeader, 'format' | 'width' | 'height' | 'orientation'>, target: ResizeSpec): number {
  const [w, h] = header.orientation >= 5 ? [header.height, header.width] : [header.width, header.height];
  const shrink = Math.min(w / target.width, h / target.height);
  if (header.format === 'webp') return shrink > 1 ? Math.round(w / shrink) * Math.round(h / shrink) : w * h;
  let factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (factor > 1 && Math.trunc(shrink) === factor) factor /= 2;
  return Math.ceil(w / factor) * Math.ceil(h / factor);
}
