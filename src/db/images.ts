/**
 * product_images: each product's photos in order (migration 0010), their original bytes and thumbnails.
 * A row is immutable in what was embedded (bytes and regions): new ones are a new row, so the vectors of
 * a row are always those of its bytes and regions.
 */
import { sql } from 'kysely';
import type { Db, RegionBox } from './types.js';

/** A photo as the API shows it (no bytes). */
export interface ProductImage {
  id: string;
  productId: string;
  position: number;
  label: string | null;
  variant: string | null;
  regions: RegionBox[];
  sha256: string;
  format: string;
  width: number;
  height: number;
  sourceUrl: string | null;
}

/** A photo to store: what the API shows, and its bytes. */
export interface NewImageWrite extends Omit<ProductImage, 'id'> {
  original: Buffer;
  thumbnail: Buffer;
}

const columns = [
  'id',
  'product_id',
  'position',
  'label',
  'variant',
  'regions',
  'sha256',
  'format',
  'width',
  'height',
  'source_url',
] as const;

export type ImageRow = {
  id: string;
  product_id: string;
  position: number;
  label: string | null;
  variant: string | null;
  regions: RegionBox[] | string;
  sha256: string;
  format: string;
  width: number;
  height: number;
  source_url: string | null;
};

export function toProductImage(r: ImageRow): ProductImage {
  return {
    id: String(r.id),
    productId: String(r.product_id),
    position: Number(r.position),
    label: r.label,
    variant: r.variant,
    regions: typeof r.regions === 'string' ? (JSON.parse(r.regions) as RegionBox[]) : r.regions,
    sha256: r.sha256,
    format: r.format,
    width: Number(r.width),
    height: Number(r.height),
    sourceUrl: r.source_url,
  };
}

/** The photos of each product, in position order. */
export async function imagesOfProducts(db: Db, productIds: readonly string[]): Promise<Map<string, ProductImage[]>> {
  const out = new Map<string, ProductImage[]>();
  if (productIds.length === 0) return out;
  const rows = await db
    .selectFrom('product_images')
    .select(columns)
    .where('product_id', 'in', [...productIds])
    .orderBy('product_id')
    .orderBy('position')
    .execute();
  for (const r of rows) {
    const image = toProductImage(r);
    const list = out.get(image.productId) ?? [];
    list.push(image);
    out.set(image.productId, list);
  }
  return out;
}

/** Inserts new photos; returns their ids in input order. */
export async function insertImages(db: Db, rows: readonly NewImageWrite[]): Promise<string[]> {
  if (rows.length === 0) return [];
  const inserted = await db
    .insertInto('product_images')
    .values(
      rows.map((r) => ({
        product_id: r.productId,
        position: r.position,
        label: r.label,
        variant: r.variant,
        regions: JSON.stringify(r.regions),
        sha256: r.sha256,
        format: r.format,
        width: r.width,
        height: r.height,
        source_url: r.sourceUrl,
        original: r.original,
        thumbnail: r.thumbnail,
      })),
    )
    .returning('id')
    .execute();
  return inserted.map((r) => String(r.id));
}

/** Moves or relabels kept photos (nothing embedded changes, so their vectors stay). */
export async function updateImagePlaces(
  db: Db,
  rows: ReadonlyArray<{ id: string; position: number; label: string | null; variant: string | null; sourceUrl: string | null }>,
): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    UPDATE product_images pi
    SET position = v.position, label = v.label, variant = v.variant, source_url = v.source_url
    FROM unnest(${rows.map((r) => r.id)}::bigint[], ${rows.map((r) => r.position)}::smallint[], ${rows.map((r) => r.label)}::text[],
                ${rows.map((r) => r.variant)}::text[], ${rows.map((r) => r.sourceUrl)}::text[])
      AS v(id, position, label, variant, source_url)
    WHERE pi.id = v.id
      AND (pi.position, pi.label, pi.variant, pi.source_url) IS DISTINCT FROM (v.position, v.label, v.variant, v.source_url)`.execute(db);
}

/** Deletes photos; their vectors go with them (ON DELETE CASCADE). */
export async function deleteImages(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .deleteFrom('product_images')
    .where('id', 'in', [...ids])
    .execute();
}

export async function getThumbnail(db: Db, imageId: string): Promise<{ thumbnail: Buffer; sha256: string } | null> {
  const row = await db.selectFrom('product_images').select(['thumbnail', 'sha256']).where('id', '=', imageId).executeTakeFirst();
  return row ? { thumbnail: Buffer.from(row.thumbnail), sha256: row.sha256 } : null;
}

/** The thumbnail of a product's first photo (Product.thumbnailUrl). */
export async function getMainThumbnail(db: Db, productId: string): Promise<{ thumbnail: Buffer; sha256: string } | null> {
  const row = await db
    .selectFrom('product_images')
    .select(['thumbnail', 'sha256'])
    .where('product_id', '=', productId)
    .orderBy('position')
    .limit(1)
    .executeTakeFirst();
  return row ? { thumbnail: Buffer.from(row.thumbnail), sha256: row.sha256 } : null;
}
