/**
 * A deterministic synthetic catalog with generated product photos (coloured shapes drawn by sharp),
 * for the offline demo, the end-to-end tests and the benchmarks: no network, no image files shipped.
 */
import sharp from 'sharp';

export const SHAPES = ['circle', 'square', 'triangle', 'star', 'ring', 'stripes', 'diamond', 'cross'] as const;
export const COLOURS = {
  red: '#d62828',
  orange: '#f77f00',
  yellow: '#fcbf49',
  green: '#2a9d8f',
  blue: '#1d4ed8',
  purple: '#7b2cbf',
  pink: '#ff70a6',
  black: '#222222',
  brown: '#7f4f24',
  teal: '#00b4d8',
} as const;
export const CATEGORIES = ['bags', 'shoes', 'hats', 'lamps', 'mugs', 'scarves'] as const;
export const BRANDS = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark'] as const;

export type Shape = (typeof SHAPES)[number];
export type Colour = keyof typeof COLOURS;

export interface SyntheticProduct {
  sku: string;
  title: string;
  description: string;
  category: string;
  brand: string;
  price: number;
  currency: string;
  inStock: boolean;
  attributes: { shape: Shape; colour: Colour };
  shape: Shape;
  colour: Colour;
}

function shapeSvg(shape: Shape, fill: string, size: number): string {
  const c = size / 2;
  const r = size * 0.32;
  const body = (() => {
    switch (shape) {
      case 'circle':
        return `<circle cx="${c}" cy="${c}" r="${r}" fill="${fill}"/>`;
      case 'square':
        return `<rect x="${c - r}" y="${c - r}" width="${2 * r}" height="${2 * r}" fill="${fill}"/>`;
      case 'triangle':
        return `<polygon points="${c},${c - r} ${c + r},${c + r} ${c - r},${c + r}" fill="${fill}"/>`;
      case 'diamond':
        return `<polygon points="${c},${c - r} ${c + r},${c} ${c},${c + r} ${c - r},${c}" fill="${fill}"/>`;
      case 'star': {
        const pts = Array.from({ length: 10 }, (_, i) => {
          const a = (Math.PI / 5) * i - Math.PI / 2;
          const rr = i % 2 ? r * 0.45 : r;
          return `${c + rr * Math.cos(a)},${c + rr * Math.sin(a)}`;
        });
        return `<polygon points="${pts.join(' ')}" fill="${fill}"/>`;
      }
      case 'ring':
        return `<circle cx="${c}" cy="${c}" r="${r * 0.8}" fill="none" stroke="${fill}" stroke-width="${r * 0.45}"/>`;
      case 'stripes':
        return Array.from(
          { length: 4 },
          (_, i) => `<rect x="${c - r}" y="${c - r + i * r * 0.55}" width="${2 * r}" height="${r * 0.3}" fill="${fill}"/>`,
        ).join('');
      case 'cross':
        return `<rect x="${c - r}" y="${c - r * 0.25}" width="${2 * r}" height="${r * 0.5}" fill="${fill}"/><rect x="${c - r * 0.25}" y="${c - r}" width="${r * 0.5}" height="${2 * r}" fill="${fill}"/>`;
    }
  })();
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="#f4f1ea"/>${body}</svg>`;
}

/** A product photo: the shape in the colour on a light background, as PNG (or JPEG). */
export async function renderProductImage(
  shape: Shape,
  colour: Colour,
  opts: { size?: number; format?: 'png' | 'jpeg' } = {},
): Promise<Buffer> {
  const size = opts.size ?? 320;
  const img = sharp(Buffer.from(shapeSvg(shape, COLOURS[colour], size)));
  return opts.format === 'jpeg' ? img.jpeg({ quality: 90 }).toBuffer() : img.png().toBuffer();
}

/** Small deterministic PRNG (mulberry32) so a catalog is the same on every machine. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * n products; product i has shape SHAPES[i % 8] and colour (i / 8) % 10, so the first 80 are
 * 80 distinct looks; categories, brands, prices and stock vary independently of the look.
 */
export function syntheticCatalog(n: number, seed = 42): SyntheticProduct[] {
  const rand = rng(seed);
  const colours = Object.keys(COLOURS) as Colour[];
  return Array.from({ length: n }, (_, i) => {
    const shape = SHAPES[i % SHAPES.length]!;
    const colour = colours[Math.floor(i / SHAPES.length) % colours.length]!;
    const category = CATEGORIES[Math.floor(rand() * CATEGORIES.length)]!;
    const brand = BRANDS[Math.floor(rand() * BRANDS.length)]!;
    const noun = category === 'scarves' ? 'scarf' : category.replace(/s$/, '');
    return {
      sku: `DEMO-${String(i + 1).padStart(5, '0')}`,
      title: `${colour[0]!.toUpperCase()}${colour.slice(1)} ${shape} ${noun}`,
      description: `A ${colour} ${noun} with a ${shape} motif.`,
      category,
      brand,
      price: Math.round((5 + rand() * 195) * 100) / 100,
      currency: 'EUR',
      inStock: rand() > 0.2,
      attributes: { shape, colour },
      shape,
      colour,
    };
  });
}

export type Perturbation = 'resize' | 'crop' | 'recompress' | 'brighter' | 'darker';

/** A shopper's photo of the same product: resized, slightly cropped, recompressed or re-lit. */
export async function perturb(image: Buffer, kind: Perturbation): Promise<Buffer> {
  const img = sharp(image);
  const { width = 320, height = 320 } = await img.metadata();
  switch (kind) {
    case 'resize':
      return img
        .resize(Math.round(width * 0.6), Math.round(height * 0.75), { fit: 'fill' })
        .png()
        .toBuffer();
    case 'crop': {
      const dx = Math.round(width * 0.03);
      const dy = Math.round(height * 0.03);
      return img
        .extract({ left: dx, top: dy, width: width - 2 * dx, height: height - 2 * dy })
        .png()
        .toBuffer();
    }
    case 'recompress':
      return img.jpeg({ quality: 40 }).toBuffer();
    case 'brighter':
      return img.modulate({ brightness: 1.1 }).png().toBuffer();
    case 'darker':
      return img.modulate({ brightness: 0.9 }).png().toBuffer();
  }
}
