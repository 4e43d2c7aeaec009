/**
 * GraphQL input → the domain's plain values: uploads are read into bytes, base64 decoded (under the byte
 * cap), cursors decoded. Past this file, catalog/ and search/ see no Upload scalar and no cursor.
 */
import { AppError, badInput } from '../errors.js';
import {
  isProductId,
  validateBase64,
  validateId,
  validateImageUrl,
  type ImageSpec,
  type ProductInputLike,
  type QueryImage,
} from '../catalog/validate.js';
import { decodeBase64Image } from '../images/source.js';
import { heldImageHandle, OFFLOAD_MIN_BYTES, payloadWorker } from '../http/payload-worker.js';
import { readUpload, type UploadReadOptions } from '../images/upload.js';
import type { ImageInput, ProductInput } from '../schema/generated.js';

/** The image of a similarity query. ImageInput is @oneOf, so GraphQL has already seen to exactly one field. */
export async function toQueryImage(image: ImageInput, maxBytes: number, upload: UploadReadOptions = {}): Promise<QueryImage> {
  if (image.file != null) return { kind: 'bytes', bytes: await readUpload(image.file, maxBytes, upload) };
  if (image.base64 != null) {
    // A phone photo's base64 (megabytes) is checked and decoded off the main thread (http/payload-worker.ts),
    // where a large JSON body's photo already is (held there: the body's value has a stand-in for it).
    const held = heldImageHandle(image.base64);
    const bytes =
      held !== null
        ? await payloadWorker().decodeHeld('image', held, maxBytes)
        : image.base64.length < OFFLOAD_MIN_BYTES
          ? decodeBase64Image(validateBase64('image', image.base64), maxBytes)
          : await payloadWorker().decodeBase64('image', image.base64, maxBytes);
    return { kind: 'bytes', bytes };
  }
  if (image.url != null) return { kind: 'url', url: validateImageUrl('image', image.url) };
  if (image.productId != null) return { kind: 'product', id: validateId('image.productId', image.productId) };
  throw badInput('image needs exactly one of base64, url, productId or file', { field: 'image' });
}

/** upsertProducts' input with each uploaded file read into bytes (other image fields pass as they are). */
export async function toProductInputs(
  products: ProductInput[],
  maxBytes: number,
  upload: UploadReadOptions = {},
): Promise<ProductInputLike[]> {
  // Worded like the other per-product image errors of catalog/ingest.
  const imageSpec = async (image: ImageInput, field: string, index: number): Promise<ImageSpec> => {
    if (image.file == null) {
      // Ingest checks and decodes the text itself, in its own words: a held photo's text comes back for it.
      const held = image.base64 == null ? null : heldImageHandle(image.base64);
      const base64 = held === null ? (image.base64 ?? null) : await payloadWorker().takeHeld(held);
      return { base64, url: image.url ?? null, productId: image.productId ?? null };
    }
    const bytes = await readUpload(image.file, maxBytes, upload).catch((err: unknown) => {
      if (!(err instanceof AppError)) throw err;
      throw new AppError(err.code, `${field}: ${err.message}`, { ...err.details, field, index }, { cause: err });
    });
    return { bytes };
  };
  return Promise.all(
    products.map(async (p, index): Promise<ProductInputLike> => {
      const { image, images, ...rest } = p;
      return {
        ...rest,
        image: image == null ? null : await imageSpec(image, `products[${index}].image`, index),
        images:
          images == null
            ? null
            : await Promise.all(
                images.map(async (img, j) => ({
                  image: await imageSpec(img.image, `products[${index}].images[${j}].image`, index),
                  label: img.label ?? null,
                  variant: img.variant ?? null,
                  regions: img.regions ?? null,
                })),
              ),
      };
    }),
  );
}

const CURSOR_PREFIX = 'product:';

/** Opaque keyset cursors of the products connection: base64url of the last product id seen. */
export function encodeCursor(id: string): string {
  return Buffer.from(CURSOR_PREFIX + id).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const raw = /^[A-Za-z0-9_-]{1,64}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString() : '';
  const id = raw.startsWith(CURSOR_PREFIX) ? raw.slice(CURSOR_PREFIX.length) : '';
  if (!isProductId(id)) throw badInput('after is not a cursor returned by this API', { field: 'after' });
  return id;
}
