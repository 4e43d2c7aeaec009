/**
 * How a shopper's photo of a product differs from the catalog's: each transform turns a catalog image
 * into a query image with sharp. Deterministic (no randomness), so two runs of `vps eval` on the same
 * catalog ask the same queries and their figures can be compared.
 *
 *   identity    the catalog image as stored: an upper bound (a model should find the product itself)
 *   crop        the central 80 %: the shopper frames the product closer, the edges are lost
 *   scale       a quarter of the pixels (half each side): a small, resampled photo from a chat or a screenshot
 *   jpeg        re-encoded as JPEG quality 25: blocking and colour bleeding of heavy compression
 *   brightness  30 % brighter: another light
 *   background  the plain backdrop (estimated from the border) replaced by a darker, textured one: the
 *               product photographed on another surface. Images without a plain backdrop change little.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';

export const TRANSFORMS = ['identity', 'crop', 'scale', 'jpeg', 'brightness', 'background'] as const;
export type Transform = (typeof TRANSFORMS)[number];

/** The transforms `vps eval` uses when none is named: every realistic change (identity is opt-in). */
export const DEFAULT_TRANSFORMS: readonly Transform[] = ['crop', 'scale', 'jpeg', 'brightness', 'background'];

const MAX_QUERY_PIXELS = 4_000_000;

export function isTransform(s: string): s is Transform {
  return (TRANSFORMS as readonly string[]).includes(s);
}

/** The query image for a catalog image under a transform (PNG unless the transform is about JPEG). */
export async function applyTransform(image: Buffer, transform: Transform): Promise<Buffer> {
  if (transform === 'identity') return image;
  // rotate(): EXIF orientation applied first, as decode does for real queries. A large catalog original
  // is first brought within a phone photo's size (4 MP), as a shopper's photo would be, so the query is
  // not refused over SEARCH_IMAGE_MAX_PIXELS for its size alone.
  let img = sharp(image, { failOn: 'error' }).rotate();
  let { width, height } = await img.clone().metadata().then(orientedSize);
  if (width * height > MAX_QUERY_PIXELS) {
    const f = Math.sqrt(MAX_QUERY_PIXELS / (width * height));
    width = Math.max(1, Math.floor(width * f));
    height = Math.max(1, Math.floor(height * f));
    img = sharp(await img.resize(width, height, { fit: 'fill' }).png().toBuffer());
  }
  switch (transform) {
    case 'crop': {
      const w = Math.max(1, Math.round(width * 0.8));
      const h = Math.max(1, Math.round(height * 0.8));
      return img
        .extract({ left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h })
        .png()
        .toBuffer();
    }
    case 'scale':
      return img
        .resize(Math.max(16, Math.round(width / 2)), Math.max(16, Math.round(height / 2)), { fit: 'fill' })
        .png()
        .toBuffer();
    case 'jpeg':
      return img.flatten({ background: '#ffffff' }).jpeg({ quality: 25, chromaSubsampling: '4:2:0' }).toBuffer();
    case 'brightness':
      return img.modulate({ brightness: 1.3 }).png().toBuffer();
    case 'background':
      return replaceBackground(img);
  }
}

function orientedSize(m: Metadata): { width: number; height: number } {
  const w = m.width ?? 1;
  const h = m.height ?? 1;
  // orientations 5–8 swap the sides once rotate() has run
  return (m.orientation ?? 1) >= 5 ? { width: h, height: w } : { width: w, height: h };
}

/**
 * Pixels close to the backdrop colour (the median of the border pixels) are replaced by a darker,
 * diagonally striped surface; the product (anything far from the backdrop) is kept.
 */
async function replaceBackground(img: Sharp): Promise<Buffer> {
  const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const border: number[][] = [[], [], []];
  const at = (x: number, y: number) => (y * width + x) * channels;
  const sample = (x: number, y: number) => {
    const i = at(x, y);
    for (let c = 0; c < 3; c++) border[c]!.push(data[i + c]!);
  };
  for (let x = 0; x < width; x++) {
    sample(x, 0);
    sample(x, height - 1);
  }
  for (let y = 0; y < height; y++) {
    sample(0, y);
    sample(width - 1, y);
  }
  const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1]!;
  const bg = border.map(median) as [number, number, number];
  const threshold = 40; // Euclidean RGB distance: a plain backdrop with JPEG noise and soft shadows
  const out = Buffer.from(data);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = at(x, y);
      const d = Math.hypot(data[i]! - bg[0], data[i + 1]! - bg[1], data[i + 2]! - bg[2]);
      if (d > threshold) continue;
      // a slate-blue surface with stripes every 12 px: colour and texture both differ from a studio backdrop
      const stripe = ((x + y) / 12) & 1;
      out[i] = stripe ? 70 : 88;
      out[i + 1] = stripe ? 84 : 102;
      out[i + 2] = stripe ? 104 : 124;
    }
  }
  return sharp(out, { raw: { width, height, channels } }).png().toBuffer();
}
