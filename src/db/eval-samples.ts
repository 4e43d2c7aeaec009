/**
 * What `vps eval` (src/eval/) reads from the catalog: a deterministic sample of products with their
 * stored original image (the queries are made from it), and thumbnails for the HTML report.
 */
import { sql } from 'kysely';
import { toProduct, type Product } from './products.js';
import type { Db } from './types.js';

/**
 * Up to `limit` products that have a stored image, optionally of one category. Ordered by a hash of the
 * SKU rather than by id, so a small sample spreads over the whole catalog (not only the first import)
 * and is the same on every run while the catalog does not change. The images are read one at a time
 * (originalImage), so a sample never holds many full-size originals in memory.
 */
export async function sampleProducts(db: Db, opts: { limit: number; category?: string | null }): Promise<Product[]> {
  let q = db
    .selectFrom('products')
    .where((eb) => eb.exists(eb.selectFrom('product_images').select('id').whereRef('product_images.product_id', '=', 'products.id')))
    .selectAll('products')
    .orderBy(sql`md5(products.sku)`)
    .orderBy('products.id')
    .limit(opts.limit);
  if (opts.category != null) q = q.where('products.category', '=', opts.category);
  return (await q.execute()).map(toProduct);
}

/** A product's stored original image (its main photo's, position 0 first); null when it has none (any longer). */
export async function originalImage(db: Db, productId: string): Promise<Buffer | null> {
  const row = await db
    .selectFrom('product_images')
    .select('original')
    .where('product_id', '=', productId)
    .orderBy('position')
    .limit(1)
    .executeTakeFirst();
  return row ? Buffer.from(row.original) : null;
}

/** Stored thumbnails (WebP) of the products' main photos by product id; products without one are left out. */
export async function thumbnailsByIds(db: Db, ids: readonly string[]): Promise<Map<string, Buffer>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('product_images')
    .select(['product_id', 'thumbnail'])
    .where('product_id', 'in', [...ids])
    .orderBy('product_id')
    .orderBy('position', 'desc') // the main photo last: it wins in the map
    .execute();
  return new Map(rows.map((r) => [String(r.product_id), Buffer.from(r.thumbnail)]));
}
