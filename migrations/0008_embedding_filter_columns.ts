// Selective filters at scale (issue 10): the filter columns (category, brand, price, in_stock) are
// carried on the vector rows, so a filtered similarity query reads only product_embeddings: an HNSW
// walk checks the filter on the tuple it already fetched, and an exact scan finds a category's vectors
// through one B-tree on (model_id, category) instead of joining products through a random index lookup
// per row (at 1M rows the join was most of the 1 % query's time, BENCHMARKS.md).
//
// products stays the one source of truth; triggers keep the copies equal for every writer (ingest,
// import, an analyst's UPDATE): a vector row takes its product's values when it is inserted (or when
// anyone writes the copies directly), and a product update that changes one of them rewrites the
// product's vector rows in the same transaction. The columns are nullable so that a vector for a
// missing product still fails on the foreign key, as it did before.
import { sql, type Kysely } from 'kysely';

// The analysts' similar_products() (migration 0003) with its category filter on the carried column:
// the walk then reads only product_embeddings. FILTER is the WHERE of the inner walk.
function similarProducts(filter: string) {
  return sql`
    CREATE OR REPLACE FUNCTION similar_products(of_product bigint, k integer DEFAULT 10, in_category text DEFAULT NULL)
    RETURNS TABLE (id bigint, sku text, title text, category text, brand text, price numeric, score double precision, distance double precision)
    LANGUAGE plpgsql STABLE
    SET hnsw.iterative_scan = 'relaxed_order'
    SET hnsw.ef_search = '100'
    AS $fn$
    DECLARE
      m record;
      q halfvec;
    BEGIN
      IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000';
      END IF;
      SELECT em.id, em.dimension INTO m FROM embedding_models em WHERE em.is_active;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'no embedding model is active';
      END IF;
      SELECT e.embedding INTO q FROM product_embeddings e WHERE e.product_id = of_product AND e.model_id = m.id;
      IF q IS NULL THEN
        RAISE EXCEPTION 'product % has no vector for the active model %', of_product, m.id;
      END IF;
      RETURN QUERY EXECUTE format(
        'SELECT n.product_id, p.sku, p.title, p.category, p.brand, p.price, 1 - n.distance, n.distance
         FROM (SELECT e.product_id, (e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s))::float8 AS distance
               ${sql.raw(filter)}
               ORDER BY e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s)
               LIMIT $3) n
         JOIN products p ON p.id = n.product_id
         ORDER BY n.distance, (n.product_id = $4) DESC, n.product_id',
        m.dimension, m.id)
      USING q, in_category, k, of_product;
    END
    $fn$`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE product_embeddings
      ADD COLUMN category text,
      ADD COLUMN brand    text,
      ADD COLUMN price    numeric(12,2),
      ADD COLUMN in_stock boolean`.execute(db);

  await sql`
    CREATE FUNCTION product_embeddings_copy_filters() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      SELECT p.category, p.brand, p.price, p.in_stock INTO NEW.category, NEW.brand, NEW.price, NEW.in_stock
      FROM products p WHERE p.id = NEW.product_id;
      RETURN NEW;
    END
    $fn$`.execute(db);
  // Also on UPDATE of the copies themselves: they cannot be made to disagree with products by hand.
  await sql`
    CREATE TRIGGER product_embeddings_copy_filters
    BEFORE INSERT OR UPDATE OF product_id, category, brand, price, in_stock ON product_embeddings
    FOR EACH ROW EXECUTE FUNCTION product_embeddings_copy_filters()`.execute(db);

  await sql`
    CREATE FUNCTION products_push_filters() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      UPDATE product_embeddings e
      SET category = NEW.category, brand = NEW.brand, price = NEW.price, in_stock = NEW.in_stock
      WHERE e.product_id = NEW.id;
      RETURN NULL;
    END
    $fn$`.execute(db);
  // Only when a carried value really changed: an upsert that rewrites a product unchanged (or changes
  // only its title) leaves the vector rows, and so the HNSW index, alone.
  await sql`
    CREATE TRIGGER products_push_filters
    AFTER UPDATE OF category, brand, price, in_stock ON products
    FOR EACH ROW
    WHEN (OLD.category IS DISTINCT FROM NEW.category OR OLD.brand IS DISTINCT FROM NEW.brand
          OR OLD.price IS DISTINCT FROM NEW.price OR OLD.in_stock IS DISTINCT FROM NEW.in_stock)
    EXECUTE FUNCTION products_push_filters()`.execute(db);

  // Existing rows: one pass (the BEFORE trigger would do the same row by row). Heap pages of 768-d
  // halfvecs are full, so the updated rows move and every index gets an entry for each: into an HNSW
  // graph that is far slower than building it again (and leaves it with a dead copy of every row), so
  // the models' HNSW indexes are dropped first and rebuilt from their own definitions afterwards. On a
  // large catalog give the migrate command memory for the rebuild (PGOPTIONS='-c maintenance_work_mem=2GB').
  const filled = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM product_embeddings) AS any`.execute(db);
  if (filled.rows[0]?.any) {
    const hnsw = await sql<{ indexname: string; indexdef: string }>`
      SELECT indexname, indexdef FROM pg_indexes
      WHERE schemaname = current_schema() AND tablename = 'product_embeddings' AND indexdef ILIKE '% USING hnsw %'`.execute(db);
    for (const ix of hnsw.rows) await sql`DROP INDEX ${sql.id(ix.indexname)}`.execute(db);
    await sql`
      UPDATE product_embeddings e
      SET category = p.category, brand = p.brand, price = p.price, in_stock = p.in_stock
      FROM products p WHERE p.id = e.product_id`.execute(db);
    for (const ix of hnsw.rows) await sql.raw(ix.indexdef).execute(db);
  }

  // The exact path's access paths for the filters that can be selective; in_stock is two values and is
  // left to the filter. model_id first: every search names one model.
  await sql`CREATE INDEX product_embeddings_model_category_idx ON product_embeddings (model_id, category)`.execute(db);
  await sql`CREATE INDEX product_embeddings_model_brand_idx ON product_embeddings (model_id, brand)`.execute(db);
  await sql`CREATE INDEX product_embeddings_model_price_idx ON product_embeddings (model_id, price)`.execute(db);
  // (model_id, category) leads with model_id, so the single-column model index is redundant.
  await sql`DROP INDEX IF EXISTS product_embeddings_model_idx`.execute(db);

  await similarProducts(`FROM product_embeddings e WHERE e.model_id = %2$L AND ($2::text IS NULL OR e.category = $2)`).execute(db);

  const comments: Array<[string, string]> = [
    ['COLUMN product_embeddings.category', 'Copy of products.category, kept equal by triggers, so filtered search reads only this table.'],
    ['COLUMN product_embeddings.brand', 'Copy of products.brand, kept equal by triggers (see category).'],
    ['COLUMN product_embeddings.price', 'Copy of products.price, kept equal by triggers (see category).'],
    ['COLUMN product_embeddings.in_stock', 'Copy of products.in_stock, kept equal by triggers (see category).'],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await similarProducts(
    `FROM product_embeddings e JOIN products p ON p.id = e.product_id WHERE e.model_id = %2$L AND ($2::text IS NULL OR p.category = $2)`,
  ).execute(db);
  await sql`CREATE INDEX IF NOT EXISTS product_embeddings_model_idx ON product_embeddings (model_id)`.execute(db);
  await sql`DROP TRIGGER IF EXISTS products_push_filters ON products`.execute(db);
  await sql`DROP FUNCTION IF EXISTS products_push_filters()`.execute(db);
  await sql`DROP TRIGGER IF EXISTS product_embeddings_copy_filters ON product_embeddings`.execute(db);
  await sql`DROP FUNCTION IF EXISTS product_embeddings_copy_filters()`.execute(db);
  await sql`
    ALTER TABLE product_embeddings
      DROP COLUMN IF EXISTS category, DROP COLUMN IF EXISTS brand,
      DROP COLUMN IF EXISTS price, DROP COLUMN IF EXISTS in_stock`.execute(db);
}
