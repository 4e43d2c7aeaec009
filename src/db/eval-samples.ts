/**
 * What `vps eval` (src/eval/) reads from the catalog: a deterministic sample of products with their
 * stored original image (the queries are made from it), and thumbnails for the HTML report.
 */
import { sql } from 'kysely';
import { toProduct, type Product } from './products.js';
import type { Db } from './types.js';

export interface SampledProduct {
  product: Product;
  original: Buffer;
}

/**
 * Up to `limit` products that have a stored image, optionally of one category. Ordered by a hash of the
 * SKU rather than by id, so a small sample spreads over the whole catalog (not only the first import)
 * and is the same on every run while the catalog does not change.
 */
export async function sampleProductImages(db: Db, opts: { limit: number; category?: string | null }): Promise<SampledProduct[]> {
  let q = db
    .selectFrom('products')
    .innerJoin('product_images', 'product_images.product_id', 'products.id')
    .selectAll('products')
    .select('product_images.original')
    .orderBy(sql`md5(products.sku)`)
    .orderBy('products.id')
    .limit(opts.limit);
  if (opts.category != null) q = q.where('products.category', '=', opts.category);
  const rows = await q.execute();
  return rows.map(({ original, ...row }) => ({ product: toProduct(row), original: Buffer.from(original) }));
}

/** Stored thumbnails (WebP) by product id; products without one are left out. */
export async function thumbnailsByIds(db: Db, ids: readonly string[]): Promise<Map<string, Buffer>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('product_images')
    .select(['product_id', 'thumbnail'])
    .where('product_id', 'in', [...ids])
    .execute();
  return new Map(rows.map((r) => [String(r.product_id), Buffer.from(r.thumbnail)]));
}
