/**
 * The vector catalog the search-statement tests run on: products inserted in one statement per batch
 * (SQL, no ingest: these tests are about the statements, not the images), one embedding-like vector per
 * product and model, the models' HNSW indexes built after the bulk load (as a reindex does), planner
 * statistics taken. One home for the seed that filtered-search, category-indexes, search-hot-path and
 * read-replicas copied; each file still says what its catalog looks like (size, categories, prices).
 */
import { sql, type Kysely } from 'kysely';
import { upsertEmbeddings } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import type { DB } from '../../src/db/types.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import type { VectorSpace } from './vectors.js';

export interface VectorCatalog {
  /** How many products; product i gets the i-th vector of each model's space. */
  n: number;
  /** SKUs are `${skuPrefix}${i}`. */
  skuPrefix: string;
  category: (i: number) => string;
  /** Defaults: no brand, no price, in stock. */
  brand?: (i: number) => string | null;
  price?: (i: number) => number | null;
  inStock?: (i: number) => boolean;
  /** The models, each with the space its vectors come from; the first is activated. */
  models: Array<{ id: string; dimension: number; space: VectorSpace }>;
  /** Rows per INSERT (default: all at once). */
  batch?: number;
}

/** Seeds the catalog; returns the product ids in order (ids[i] is product i). */
export async function seedVectorCatalog(db: Kysely<DB>, c: VectorCatalog): Promise<string[]> {
  for (const m of c.models) await registerModel(db, { id: m.id, dimension: m.dimension, source: 'test', variant: null });
  await activateModel(db, c.models[0]!.id);
  const ids: string[] = [];
  const batch = c.batch ?? c.n;
  for (let start = 0; start < c.n; start += batch) {
    const rows = Array.from({ length: Math.min(batch, c.n - start) }, (_, j) => start + j);
    const inserted = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category, brand, price, in_stock)
      SELECT ${c.skuPrefix} || i, 'product ' || i, cat, brand, price, stock
      FROM unnest(${rows}::int[], ${rows.map(c.category)}::text[], ${rows.map((i) => c.brand?.(i) ?? null)}::text[],
                  ${rows.map((i) => c.price?.(i) ?? null)}::numeric[], ${rows.map((i) => c.inStock?.(i) ?? true)}::boolean[])
        WITH ORDINALITY AS t(i, cat, brand, price, stock, n)
      ORDER BY n
      RETURNING id`.execute(db);
    const batchIds = inserted.rows.map((r) => String(r.id));
    for (const m of c.models) {
      await upsertEmbeddings(
        db,
        batchIds.map((productId, j) => ({ productId, modelId: m.id, embedding: m.space.vector(rows[j]!), imageSha256: 'a'.repeat(64) })),
      );
    }
    ids.push(...batchIds);
  }
  for (const m of c.models) await ensureModelIndex(db, m);
  await sql`ANALYZE products`.execute(db);
  await sql`ANALYZE product_embeddings`.execute(db);
  return ids;
}
