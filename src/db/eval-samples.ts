/**
 * What `vps eval` (src/eval/) reads from the catalog: a deterministic sample of products with their
 * stored original image (the queries are made from it), the held-out photo rankings (eval/held-out.ts),
 * and thumbnails for the HTML report.
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
export async function sampleProducts(db: Db, opts: { limit: number; category?: string | null; minPhotos?: number }): Promise<Product[]> {
  const minPhotos = opts.minPhotos ?? 1;
  let q = db
    .selectFrom('products')
    .where((eb) =>
      minPhotos <= 1
        ? eb.exists(eb.selectFrom('product_images').select('id').whereRef('product_images.product_id', '=', 'products.id'))
        : eb(
            eb
              .selectFrom('product_images')
              .select((c) => c.fn.countAll<number>().as('n'))
              .whereRef('product_images.product_id', '=', 'products.id'),
            '>=',
            minPhotos,
          ),
    )
    .selectAll('products')
    .orderBy(sql`md5(products.sku)`)
    .orderBy('products.id')
    .limit(opts.limit);
  if (opts.category != null) q = q.where('products.category', '=', opts.category);
  return (await q.execute()).map(toProduct);
}

/** The two rankings of a held-out photo's query (product ids, best first, at most k each). */
export interface HeldOutRankings {
  /** Every other photo (and region) of every product counts; a product ranks by its best one. */
  bestPhoto: string[];
  /** Only each product's first photo, whole (what a catalog of one photo per product could answer). */
  firstPhoto: string[];
}

/**
 * Leave one out: the product's last photo is the query (its stored whole-photo vector for the model, so
 * nothing is embedded again) and is taken out of the catalog for the ranking (its vectors, whole and
 * regions, do not count), so it is a view of the product the catalog does not hold. Both rankings are
 * exact (every vector of the model, no index), in one statement, over the same vectors: what differs is
 * only the rule. Null when the product has no such vector (fewer than two photos, or not embedded).
 */
export async function heldOutRankings(db: Db, o: { modelId: string; productId: string; k: number }): Promise<HeldOutRankings | null> {
  const r = await sql<{ best: string[] | null; first: string[] | null }>`
    WITH held AS (
      SELECT pi.id FROM product_images pi
      WHERE pi.product_id = ${o.productId} AND pi.position > 0
      ORDER BY pi.position DESC LIMIT 1
    ), query AS (
      SELECT e.embedding FROM product_embeddings e JOIN held ON e.image_id = held.id
      WHERE e.model_id = ${o.modelId} AND e.region = 0
    ), scored AS MATERIALIZED (
      SELECT e.product_id, e.embedding <=> query.embedding AS distance,
             (e.image_id IS NULL OR (pi.position = 0 AND e.region = 0)) AS first_photo
      FROM product_embeddings e CROSS JOIN query LEFT JOIN product_images pi ON pi.id = e.image_id
      WHERE e.model_id = ${o.modelId} AND e.image_id IS DISTINCT FROM (SELECT id FROM held)
    )
    SELECT
      (SELECT array_agg(product_id::text ORDER BY distance, product_id) FROM (
         SELECT product_id, min(distance) AS distance FROM scored GROUP BY product_id ORDER BY 2, 1 LIMIT ${o.k}) b) AS best,
      (SELECT array_agg(product_id::text ORDER BY distance, product_id) FROM (
         SELECT product_id, min(distance) AS distance FROM scored WHERE first_photo GROUP BY product_id ORDER BY 2, 1 LIMIT ${o.k}) f) AS first
    WHERE EXISTS (SELECT 1 FROM query)`.execute(db);
  const row = r.rows[0];
  return row ? { bestPhoto: row.best ?? [], firstPhoto: row.first ?? [] } : null;
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
