/**
 * Validation of catalog input, independent of GraphQL: each rule throws BAD_USER_INPUT naming the
 * offending field, before anything is written.
 */
import { badInput } from '../errors.js';
import type { AttributeFilter, ProductFilter, ProductWrite } from '../db/products.js';
import type { RegionBox } from '../db/types.js';

export const LIMITS = {
  productsPerUpsert: 500,
  pageSize: { default: 50, max: 500 },
  sku: 128,
  title: 500,
  description: 10_000,
  category: 128,
  brand: 128,
  attributesBytes: 64 * 1024,
  urlLength: 2048,
  maxPrice: 9_999_999_999.99,
  filterCategories: 100,
  /** ProductFilter.attributes: entries, values per entry, and lengths (a tagging taxonomy's bounds). */
  filterAttributes: 10,
  filterAttributeValues: 100,
  attributeName: 64,
  attributeValue: 128,
  /** Photos per product by default (PRODUCT_MAX_IMAGES). */
  imagesPerProduct: 12,
  /** Regions of interest per photo, as Product Search allows. */
  regionsPerImage: 10,
  imageLabel: 64,
  variant: 128,
} as const;

/**
 * An image as plain values, out of any transport (the GraphQL surface reads uploads and base64 into
 * `bytes`; the importer gives url or base64). At most one field is set.
 */
export interface ImageSpec {
  base64?: string | null;
  url?: string | null;
  productId?: string | null;
  /** The image file's bytes (a multipart upload read by the resolver). */
  bytes?: Uint8Array | null;
}

/** What a similarity query is asked about: an image's bytes, an image at a URL, or a stored product. */
export type QueryImage = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'url'; url: string } | { kind: 'product'; id: string };

export type ImageSource =
  | { kind: 'base64'; base64: string }
  | { kind: 'url'; url: string }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'productId'; productId: string };

export interface ProductInputLike {
  sku: string;
  title: string;
  description?: string | null;
  category: string;
  brand?: string | null;
  price?: number | null;
  currency?: string | null;
  inStock?: boolean | null;
  attributes?: unknown;
  /** Shorthand for images: [{ image }]. */
  image?: ImageSpec | null;
  /** The product's photos in order; given, they replace the stored ones (unchanged ones keep their vectors). */
  images?: ProductImageSpec[] | null;
}

/** One photo of a product as given: the image and what the merchant says about it. */
export interface ProductImageSpec {
  image: ImageSpec;
  label?: string | null;
  variant?: string | null;
  regions?: RegionBox[] | null;
}

/** A photo validated: its source, and label, variant and regions normalised. */
export interface ValidatedImage {
  source: Exclude<ImageSource, { kind: 'productId' }>;
  label: string | null;
  variant: string | null;
  regions: RegionBox[];
}

/**
 * A region of interest: fractions of the image, inside it, not empty. Shared by ProductImageInput.regions
 * and a query's region.
 */
export function validateRegion(field: string, r: RegionBox): RegionBox {
  const { x, y, width, height } = r;
  const ok =
    [x, y, width, height].every((v) => typeof v === 'number' && Number.isFinite(v)) &&
    x >= 0 &&
    y >= 0 &&
    width > 0 &&
    height > 0 &&
    x + width <= 1 + 1e-9 &&
    y + height <= 1 + 1e-9;
  if (!ok) {
    throw badInput(`${field} must be fractions of the image: x, y ≥ 0, width, height > 0, x + width ≤ 1, y + height ≤ 1`, { field });
  }
  return { x, y, width: Math.min(width, 1 - x), height: Math.min(height, 1 - y) };
}

function text(field: string, value: string, max: number, { required }: { required: boolean }): string {
  const v = value.trim();
  if (required && v.length === 0) throw badInput(`${field} must not be empty`, { field });
  if (v.length > max) throw badInput(`${field} is longer than ${max} characters`, { field, max });
  return v;
}

function optionalText(field: string, value: string | null | undefined, max: number): string | null {
  if (value == null) return null;
  const v = text(field, value, max, { required: false });
  return v.length ? v : null;
}

export function validatePrice(field: string, price: number | null | undefined): number | null {
  if (price == null) return null;
  if (!Number.isFinite(price) || price < 0 || price > LIMITS.maxPrice) {
    throw badInput(`${field} must be between 0 and ${LIMITS.maxPrice}`, { field });
  }
  return price;
}

/**
 * Exactly one of base64, url, productId, bytes. GraphQL already enforces it (ImageInput is @oneOf); the
 * importer's JSON Lines objects are checked here.
 */
export function validateImageSpec(field: string, image: ImageSpec): ImageSource {
  const given = (['base64', 'url', 'productId', 'bytes'] as const).filter((k) => image[k] != null);
  if (given.length !== 1) {
    throw badInput(`${field} needs exactly one of base64, url, productId or file (got ${given.length ? given.join(' and ') : 'none'})`, {
      field,
    });
  }
  if (image.bytes != null) return { kind: 'bytes', bytes: image.bytes };
  if (image.base64 != null) return { kind: 'base64', base64: validateBase64(field, image.base64) };
  if (image.url != null) return { kind: 'url', url: validateImageUrl(field, image.url) };
  return { kind: 'productId', productId: validateId(`${field}.productId`, image.productId!) };
}

/** `field`.base64: standard or URL-safe alphabet, whitespace removed; decoded by images/ (its size cap). */
export function validateBase64(field: string, base64: string): string {
  const b64 = base64.replace(/\s+/g, '');
  if (b64.length === 0 || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw badInput(`${field}.base64 is not valid base64`, { field });
  return b64;
}

/** `field`.url: an http(s) URL of bounded length (where it may point is checked when it is fetched). */
export function validateImageUrl(field: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badInput(`${field}.url is not a valid URL`, { field });
  }
  if (value.length > LIMITS.urlLength) throw badInput(`${field}.url is longer than ${LIMITS.urlLength} characters`, { field });
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badInput(`${field}.url must be http or https`, { field });
  return url.toString();
}

/** Whether a string could be a product id (a positive bigint); anything else can never match a row. */
export function isProductId(id: string): boolean {
  return /^[1-9][0-9]{0,17}$/.test(id);
}

export function validateId(field: string, id: string): string {
  if (!isProductId(id)) throw badInput(`${field} is not a valid product id`, { field });
  return id;
}

export interface ValidatedProduct {
  write: Omit<ProductWrite, 'imageUrl' | 'imageSha256'>;
  /** The photos in order; null: none given (the stored ones stay). */
  images: ValidatedImage[] | null;
}

function validateProductImage(field: string, spec: ProductImageSpec): ValidatedImage {
  const source = validateImageSpec(`${field}.image`, spec.image);
  if (source.kind === 'productId') throw badInput(`${field}.image takes base64, url or file, not productId`, { field: `${field}.image` });
  const regions = spec.regions ?? [];
  if (regions.length > LIMITS.regionsPerImage) {
    throw badInput(`${field}.regions takes at most ${LIMITS.regionsPerImage} regions`, {
      field: `${field}.regions`,
      max: LIMITS.regionsPerImage,
    });
  }
  return {
    source,
    label: optionalText(`${field}.label`, spec.label, LIMITS.imageLabel),
    variant: optionalText(`${field}.variant`, spec.variant, LIMITS.variant),
    regions: regions.map((r, j) => validateRegion(`${field}.regions[${j}]`, r)),
  };
}

export function validateProductInputs(inputs: ProductInputLike[], opts: { maxImages?: number } = {}): ValidatedProduct[] {
  const maxImages = opts.maxImages ?? LIMITS.imagesPerProduct;
  if (inputs.length === 0) throw badInput('products must not be empty', { field: 'products' });
  if (inputs.length > LIMITS.productsPerUpsert) {
    throw badInput(`at most ${LIMITS.productsPerUpsert} products per call`, { field: 'products', max: LIMITS.productsPerUpsert });
  }
  const seen = new Set<string>();
  return inputs.map((p, i) => {
    const at = `products[${i}]`;
    const sku = text(`${at}.sku`, p.sku, LIMITS.sku, { required: true });
    if (seen.has(sku)) throw badInput(`duplicate sku "${sku}" in one call`, { field: `${at}.sku` });
    seen.add(sku);
    const currency = p.currency == null ? null : p.currency.trim();
    if (currency != null && !/^[A-Z]{3}$/.test(currency)) {
      throw badInput(`${at}.currency must be an ISO 4217 code of three capital letters`, { field: `${at}.currency` });
    }
    const attributes = p.attributes ?? {};
    if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) {
      throw badInput(`${at}.attributes must be a JSON object`, { field: `${at}.attributes` });
    }
    if (Buffer.byteLength(JSON.stringify(attributes)) > LIMITS.attributesBytes) {
      throw badInput(`${at}.attributes is larger than ${LIMITS.attributesBytes} bytes`, { field: `${at}.attributes` });
    }
    const price = validatePrice(`${at}.price`, p.price);
    if (price != null && Math.abs(price * 100 - Math.round(price * 100)) > 1e-6) {
      throw badInput(`${at}.price has more than two decimals`, { field: `${at}.price` });
    }
    if (p.image != null && p.images != null) {
      throw badInput(`${at} takes image or images, not both`, { field: `${at}.images` });
    }
    let images: ValidatedImage[] | null = null;
    if (p.image != null) {
      const source = validateImageSpec(`${at}.image`, p.image);
      if (source.kind === 'productId') throw badInput(`${at}.image takes base64, url or file, not productId`, { field: `${at}.image` });
      images = [{ source, label: null, variant: null, regions: [] }];
    } else if (p.images != null) {
      if (p.images.length > maxImages) {
        throw badInput(`${at}.images takes at most ${maxImages} images`, { field: `${at}.images`, max: maxImages });
      }
      images = p.images.map((spec, j) => validateProductImage(`${at}.images[${j}]`, spec));
    }
    return {
      write: {
        sku,
        title: text(`${at}.title`, p.title, LIMITS.title, { required: true }),
        description: optionalText(`${at}.description`, p.description, LIMITS.description),
        category: text(`${at}.category`, p.category, LIMITS.category, { required: true }),
        brand: optionalText(`${at}.brand`, p.brand, LIMITS.brand),
        price,
        currency,
        inStock: p.inStock ?? true,
        attributes: attributes as Record<string, unknown>,
      },
      images,
    };
  });
}

export function validateFilter(filter: ProductFilter | null | undefined): ProductFilter | null {
  if (!filter) return null;
  const minPrice = validatePrice('filter.minPrice', filter.minPrice);
  const maxPrice = validatePrice('filter.maxPrice', filter.maxPrice);
  if (minPrice != null && maxPrice != null && minPrice > maxPrice) {
    throw badInput('filter.minPrice must not exceed filter.maxPrice', { field: 'filter.minPrice' });
  }
  if (filter.categories && filter.categories.length > LIMITS.filterCategories) {
    throw badInput(`filter.categories takes at most ${LIMITS.filterCategories} names`, { field: 'filter.categories' });
  }
  for (const name of filter.categories ?? []) {
    if (name.length > LIMITS.category)
      throw badInput(`filter.categories names are at most ${LIMITS.category} characters`, { field: 'filter.categories' });
  }
  for (const [field, value, max] of [
    ['filter.category', filter.category, LIMITS.category],
    ['filter.brand', filter.brand, LIMITS.brand],
    ['filter.variant', filter.variant, LIMITS.variant],
  ] as const) {
    if (value != null && value.length > max) throw badInput(`${field} is longer than ${max} characters`, { field });
  }
  return { ...filter, minPrice, maxPrice, attributes: validateAttributeFilters(filter.attributes) };
}

/** With the u flag a paired surrogate is one astral code point; only a lone one is category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * filter.attributes: bounded like categories (entries, values, lengths; the name and label bounds of a
 * tagging taxonomy, so every accepted suggestion can be asked for), names not empty, and strings that
 * JSON can carry (a lone UTF-16 surrogate has no UTF-8 form: the containment document would not parse).
 */
function validateAttributeFilters(list: AttributeFilter[] | null | undefined): AttributeFilter[] | null {
  if (list == null) return null;
  const field = 'filter.attributes';
  if (list.length > LIMITS.filterAttributes) throw badInput(`${field} takes at most ${LIMITS.filterAttributes} entries`, { field });
  return list.map((a, i) => {
    const at = `${field}[${i}]`;
    if (a.name.length === 0) throw badInput(`${at}.name must not be empty`, { field: `${at}.name` });
    if (a.name.length > LIMITS.attributeName)
      throw badInput(`${at}.name is longer than ${LIMITS.attributeName} characters`, { field: `${at}.name`, max: LIMITS.attributeName });
    if (a.values.length > LIMITS.filterAttributeValues)
      throw badInput(`${at}.values takes at most ${LIMITS.filterAttributeValues} values`, { field: `${at}.values` });
    for (const v of a.values) {
      if (v.length > LIMITS.attributeValue)
        throw badInput(`${at}.values are at most ${LIMITS.attributeValue} characters`, {
          field: `${at}.values`,
          max: LIMITS.attributeValue,
        });
    }
    if ([a.name, ...a.values].some((s) => LONE_SURROGATE.test(s)))
      throw badInput(`${at} contains a lone UTF-16 surrogate, which JSON text cannot hold`, { field: at });
    return { name: a.name, values: a.values };
  });
}

export function validatePageSize(first: number | null | undefined): number {
  if (first == null) return LIMITS.pageSize.default;
  if (!Number.isInteger(first) || first < 1 || first > LIMITS.pageSize.max) {
    throw badInput(`first must be between 1 and ${LIMITS.pageSize.max}`, { field: 'first', max: LIMITS.pageSize.max });
  }
  return first;
}
