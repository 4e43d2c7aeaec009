// A product is many photos (issue 22): an ordered list of images per product, each with an optional
// label and variant and up to 10 regions of interest (normalised boxes, each embedded as its own crop),
// and one vector per image and per region per model. Search ranks a product by its best photo and
// returns each product once (src/search/query.ts).
//
// Existing catalogs move over without re-embedding: a product's image becomes its image at position 0
// and keeps its id-less vectors, which are attached to it (image_id, region 0). A vector whose image is
// not stored (a product ingested before 0002, or an image changed since that model embedded it) keeps
// image_id NULL: it still answers for its product and is replaced by the first vector written for one
// of the product's stored images. Nothing stored is deleted.
//
// An image row is immutable in what was embedded (its bytes and its regions): new bytes or new regions
// make a new row (a new id, new vectors), and the old row takes its vectors with it (ON DELETE CASCADE).
// Position, label and variant can change in place. So "is this image embedded by a model" is "does the
// row have its vectors", and a thumbnail URL by image id never needs a cache buster.
import { sql, type Kysely } from 'kysely';

// The analysts' similar_products() (migrations 0003, 0008) by product: the product's first photo is the
// query, a product's distance is its best photo's, and each product is listed once. The walk reads more
// vectors than k (a product may have many); when the vectors read hold fewer than k products it reads
// four times as many, until k products, the walk's end, or every vector k products could have (100 photos ×
// (1 + 10 regions) each: PRODUCT_MAX_IMAGES is at most 100).
const similarProductsGrouped = sql`
  CREATE OR REPLACE FUNCTION similar_products(of_product bigint, k integer DEFAULT 10, in_category text DEFAULT NULL)
  RETURNS TABLE (id bigint, sku text, title text, category text, brand text, price numeric, score double precision, distance double precision)
  LANGUAGE plpgsql STABLE
  SET hnsw.iterative_scan = 'relaxed_order'
  SET hnsw.ef_search = '100'
  AS $fn$
  DECLARE
    m record;
    q halfvec;
    lim integer;
    got integer;
    products_found integer;
  BEGIN
    IF k IS NULL OR k < 1 OR k > 1000 THEN
      RAISE EXCEPTION 'k must be between 1 and 1000';
    END IF;
    SELECT em.id, em.dimension INTO m FROM embedding_models em WHERE em.is_active;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no embedding model is active';
    END IF;
    SELECT e.embedding INTO q
    FROM product_embeddings e LEFT JOIN product_images pi ON pi.id = e.image_id
    WHERE e.product_id = of_product AND e.model_id = m.id AND e.region = 0
    ORDER BY pi.position NULLS LAST LIMIT 1;
    IF q IS NULL THEN
      RAISE EXCEPTION 'product % has no vector for the active model %', of_product, m.id;
    END IF;
    lim := k * 4;
    LOOP
      EXECUTE format(
        'SELECT count(*), count(DISTINCT w.product_id) FROM (
           SELECT e.product_id FROM product_embeddings e
           WHERE e.model_id = %2$L AND ($2::text IS NULL OR e.category = $2)
           ORDER BY e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s) LIMIT $3) w',
        m.dimension, m.id)
      INTO got, products_found USING q, in_category, lim;
      EXIT WHEN products_found >= k OR got < lim OR lim >= k * 1100;
      lim := lim * 4;
    END LOOP;
    RETURN QUERY EXECUTE format(
      'SELECT n.product_id, p.sku, p.title, p.category, p.brand, p.price, 1 - n.distance, n.distance
       FROM (SELECT w.product_id, min(w.distance) AS distance
             FROM (SELECT e.product_id, (e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s))::float8 AS distance
                   FROM product_embeddings e
                   WHERE e.model_id = %2$L AND ($2::text IS NULL OR e.category = $2)
                   ORDER BY e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s)
                   LIMIT $3) w
             GROUP BY w.product_id
             ORDER BY 2, (w.product_id = $4) DESC, w.product_id
             LIMIT $5) n
       JOIN products p ON p.id = n.product_id
       ORDER BY n.distance, (n.product_id = $4) DESC, n.product_id',
      m.dimension, m.id)
    USING q, in_category, lim, of_product, k;
  END
  $fn$`;

/** The models' HNSW indexes (the model's and its categories'), as pg_indexes defines them. */
async function hnswIndexes(db: Kysely<unknown>) {
  const r = await sql<{ indexname: string; indexdef: string }>`
    SELECT indexname, indexdef FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = 'product_embeddings' AND indexdef ILIKE '% USING hnsw %'`.execute(db);
  return r.rows;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  // Images: an id of their own, a position in the product's list, what the merchant says about them.
  await sql`ALTER TABLE product_images ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY`.execute(db);
  await sql`ALTER TABLE product_images DROP CONSTRAINT product_images_pkey`.execute(db);
  await sql`ALTER TABLE product_images ADD PRIMARY KEY (id)`.execute(db);
  await sql`
    ALTER TABLE product_images
      ADD COLUMN position   smallint NOT NULL DEFAULT 0 CHECK (position >= 0),
      ADD COLUMN label      text CHECK (length(label) BETWEEN 1 AND 64),
      ADD COLUMN variant    text CHECK (length(variant) BETWEEN 1 AND 128),
      ADD COLUMN regions    jsonb NOT NULL DEFAULT '[]'::jsonb
        CHECK (jsonb_typeof(regions) = 'array' AND jsonb_array_length(regions) <= 10),
      ADD COLUMN source_url text`.execute(db);
  await sql`UPDATE product_images pi SET source_url = p.image_url FROM products p WHERE p.id = pi.product_id AND p.image_url IS NOT NULL`.execute(
    db,
  );
  // Deferred: a reorder swaps positions within one transaction without passing through a duplicate.
  await sql`
    ALTER TABLE product_images ADD CONSTRAINT product_images_product_position_key
      UNIQUE (product_id, position) DEFERRABLE INITIALLY DEFERRED`.execute(db);

  // Vectors: per image and region. Attaching today's vectors rewrites their rows; as in 0008 the HNSW
  // indexes are dropped first and rebuilt from their own definitions (far faster than row by row).
  await sql`
    ALTER TABLE product_embeddings
      ADD COLUMN image_id bigint REFERENCES product_images (id) ON DELETE CASCADE,
      ADD COLUMN region   smallint NOT NULL DEFAULT 0 CHECK (region BETWEEN 0 AND 10),
      ADD COLUMN variant  text`.execute(db);
  const filled = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM product_embeddings) AS any`.execute(db);
  const hnsw = filled.rows[0]?.any ? await hnswIndexes(db) : [];
  for (const ix of hnsw) await sql`DROP INDEX ${sql.id(ix.indexname)}`.execute(db);
  await sql`
    UPDATE product_embeddings e SET image_id = pi.id
    FROM product_images pi WHERE pi.product_id = e.product_id AND pi.sha256 = e.image_sha256`.execute(db);
  await sql`ALTER TABLE product_embeddings DROP CONSTRAINT product_embeddings_pkey`.execute(db);
  await sql`ALTER TABLE product_embeddings ADD CONSTRAINT product_embeddings_image_model_region_key UNIQUE (image_id, model_id, region)`.execute(
    db,
  );
  // The vectors of no stored image: at most one per (product, model), as before.
  await sql`CREATE UNIQUE INDEX product_embeddings_unattached_key ON product_embeddings (product_id, model_id) WHERE image_id IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX product_embeddings_product_model_idx ON product_embeddings (product_id, model_id)`.execute(db);
  await sql`CREATE INDEX product_embeddings_model_variant_idx ON product_embeddings (model_id, variant) WHERE variant IS NOT NULL`.execute(
    db,
  );
  for (const ix of hnsw) await sql.raw(ix.indexdef).execute(db);

  // The carried variant (as 0008 carries the product's filters): a vector row takes its image's variant,
  // and a changed variant is pushed to the image's vectors.
  await sql`
    CREATE OR REPLACE FUNCTION product_embeddings_copy_filters() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      SELECT p.category, p.brand, p.price, p.in_stock INTO NEW.category, NEW.brand, NEW.price, NEW.in_stock
      FROM products p WHERE p.id = NEW.product_id;
      NEW.variant := (SELECT pi.variant FROM product_images pi WHERE pi.id = NEW.image_id);
      RETURN NEW;
    END
    $fn$`.execute(db);
  await sql`DROP TRIGGER product_embeddings_copy_filters ON product_embeddings`.execute(db);
  await sql`
    CREATE TRIGGER product_embeddings_copy_filters
    BEFORE INSERT OR UPDATE OF product_id, image_id, category, brand, price, in_stock, variant ON product_embeddings
    FOR EACH ROW EXECUTE FUNCTION product_embeddings_copy_filters()`.execute(db);
  await sql`
    CREATE FUNCTION product_images_push_variant() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      UPDATE product_embeddings e SET variant = NEW.variant WHERE e.image_id = NEW.id;
      RETURN NULL;
    END
    $fn$`.execute(db);
  await sql`
    CREATE TRIGGER product_images_push_variant
    AFTER UPDATE OF variant ON product_images
    FOR EACH ROW WHEN (OLD.variant IS DISTINCT FROM NEW.variant)
    EXECUTE FUNCTION product_images_push_variant()`.execute(db);

  // A reindex in flight walked products by id; it now walks images by id: start its walk again (vectors
  // already written are kept, and a batch re-done overwrites).
  await sql`UPDATE reindex_jobs SET cursor = 0 WHERE state IN ('queued', 'running')`.execute(db);

  // Analysts: product_vectors keeps its meaning (one row per product: its first photo's vector); every
  // photo and region vector is in product_photo_vectors.
  await sql`
    CREATE OR REPLACE VIEW product_vectors AS
    SELECT p.id AS product_id, p.sku, p.title, p.category, p.brand, p.price, p.currency, p.in_stock,
           e.model_id, e.embedding, e.image_sha256, e.created_at AS embedded_at
    FROM products p
    JOIN embedding_models m ON m.is_active
    JOIN LATERAL (
      SELECT e.model_id, e.embedding, e.image_sha256, e.created_at
      FROM product_embeddings e LEFT JOIN product_images pi ON pi.id = e.image_id
      WHERE e.product_id = p.id AND e.model_id = m.id AND e.region = 0
      ORDER BY pi.position NULLS LAST LIMIT 1
    ) e ON true`.execute(db);
  await sql`COMMENT ON VIEW product_vectors IS ${sql.lit(
    "Products with the active model's vector of their first photo (one row per product that has one; every photo: product_photo_vectors). Cosine distance: a.embedding <=> b.embedding.",
  )}`.execute(db);
  await sql`
    CREATE VIEW product_photo_vectors AS
    SELECT p.id AS product_id, p.sku, p.title, p.category, p.brand, p.price, p.in_stock,
           e.image_id, pi.position, pi.label, pi.variant, e.region,
           CASE WHEN e.region > 0 THEN pi.regions -> (e.region - 1) END AS region_box,
           e.model_id, e.embedding, e.created_at AS embedded_at
    FROM product_embeddings e
    JOIN embedding_models m ON m.id = e.model_id AND m.is_active
    JOIN products p ON p.id = e.product_id
    LEFT JOIN product_images pi ON pi.id = e.image_id`.execute(db);
  await sql`COMMENT ON VIEW product_photo_vectors IS ${sql.lit(
    "Every vector of the active model: one per product photo (region 0) and one per region of a photo (region n: the photo's n-th box, region_box). A product's similarity is its best row's: min(a.embedding <=> b.embedding) per product_id.",
  )}`.execute(db);
  await similarProductsGrouped.execute(db);
  await sql`COMMENT ON FUNCTION similar_products(bigint, integer, text) IS ${sql.lit(
    "The k products whose photos are most similar to the given product's first photo (itself first), by the active model, optionally within one category; a product's score is its best photo's (or region's); each product once. score = cosine similarity.",
  )}`.execute(db);

  const comments: Array<[string, string]> = [
    [
      'TABLE product_images',
      "Each product's photos in order (at most PRODUCT_MAX_IMAGES): original bytes (for re-embedding), a thumbnail (for display), label, variant and regions of interest.",
    ],
    ['COLUMN product_images.id', 'Image id; the GraphQL ProductImage.id. A new id whenever the bytes or the regions change.'],
    ['COLUMN product_images.product_id', 'The product this image belongs to; the image goes when the product goes.'],
    ['COLUMN product_images.sha256', 'Hex SHA-256 of original; products.image_sha256 is the first image’s.'],
    ['COLUMN product_images.thumbnail', 'WebP thumbnail, longest side 256 px; served at /images/<image id>/thumbnail.webp.'],
    ['COLUMN product_images.position', "0-based place in the product's list of photos; position 0 is the product's main photo."],
    ['COLUMN product_images.label', 'Optional free text saying what the photo shows: front, back, on-model, detail…'],
    [
      'COLUMN product_images.variant',
      'Optional variant key or SKU the photo shows (e.g. a colour); searches may be restricted to one variant.',
    ],
    [
      'COLUMN product_images.regions',
      'Up to 10 areas of interest as fractions of the image, [{"x":…,"y":…,"width":…,"height":…}]; each is embedded as its own crop (product_embeddings.region = index + 1).',
    ],
    ['COLUMN product_images.source_url', 'Where the image came from when ingested by URL; NULL when uploaded as bytes.'],
    [
      'TABLE product_embeddings',
      'Image embeddings: one L2-normalised vector per (image, model, region), stored as halfvec; region 0 is the whole photo.',
    ],
    ['COLUMN product_embeddings.product_id', 'The product whose image was embedded; rows go when the product goes.'],
    [
      'COLUMN product_embeddings.image_id',
      'The photo embedded (product_images.id); rows go when the image goes. NULL: a vector of an image no longer or never stored (kept from before migration 0010).',
    ],
    ['COLUMN product_embeddings.region', "0: the whole photo; n ≥ 1: the crop of the photo's n-th region (product_images.regions)."],
    [
      'COLUMN product_embeddings.variant',
      'Copy of product_images.variant, kept equal by triggers, so a variant filter reads only this table.',
    ],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // One image and one vector per (product, model) again: the first photo's whole-photo vectors stay.
  await sql`DROP VIEW product_photo_vectors`.execute(db);
  await sql`
    CREATE OR REPLACE VIEW product_vectors AS
    SELECT p.id AS product_id, p.sku, p.title, p.category, p.brand, p.price, p.currency, p.in_stock,
           e.model_id, e.embedding, e.image_sha256, e.created_at AS embedded_at
    FROM products p
    JOIN product_embeddings e ON e.product_id = p.id
    JOIN embedding_models m ON m.id = e.model_id AND m.is_active`.execute(db);
  await sql`DELETE FROM product_images pi WHERE pi.position > (SELECT min(o.position) FROM product_images o WHERE o.product_id = pi.product_id)`.execute(
    db,
  );
  await sql`DELETE FROM product_embeddings WHERE region > 0`.execute(db);
  await sql`DELETE FROM product_embeddings e WHERE e.image_id IS NULL AND EXISTS (
    SELECT 1 FROM product_embeddings o WHERE o.product_id = e.product_id AND o.model_id = e.model_id AND o.image_id IS NOT NULL)`.execute(
    db,
  );
  await sql`DROP TRIGGER product_images_push_variant ON product_images`.execute(db);
  await sql`DROP FUNCTION product_images_push_variant()`.execute(db);
  await sql`DROP TRIGGER product_embeddings_copy_filters ON product_embeddings`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION product_embeddings_copy_filters() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      SELECT p.category, p.brand, p.price, p.in_stock INTO NEW.category, NEW.brand, NEW.price, NEW.in_stock
      FROM products p WHERE p.id = NEW.product_id;
      RETURN NEW;
    END
    $fn$`.execute(db);
  await sql`
    CREATE TRIGGER product_embeddings_copy_filters
    BEFORE INSERT OR UPDATE OF product_id, category, brand, price, in_stock ON product_embeddings
    FOR EACH ROW EXECUTE FUNCTION product_embeddings_copy_filters()`.execute(db);
  await sql`DROP INDEX product_embeddings_model_variant_idx`.execute(db);
  await sql`DROP INDEX product_embeddings_product_model_idx`.execute(db);
  await sql`DROP INDEX product_embeddings_unattached_key`.execute(db);
  await sql`ALTER TABLE product_embeddings DROP CONSTRAINT product_embeddings_image_model_region_key`.execute(db);
  await sql`ALTER TABLE product_embeddings DROP COLUMN image_id, DROP COLUMN region, DROP COLUMN variant`.execute(db);
  await sql`ALTER TABLE product_embeddings ADD PRIMARY KEY (product_id, model_id)`.execute(db);
  await sql`ALTER TABLE product_images DROP CONSTRAINT product_images_product_position_key`.execute(db);
  await sql`ALTER TABLE product_images DROP CONSTRAINT product_images_pkey`.execute(db);
  await sql`ALTER TABLE product_images DROP COLUMN id, DROP COLUMN position, DROP COLUMN label, DROP COLUMN variant, DROP COLUMN regions, DROP COLUMN source_url`.execute(
    db,
  );
  await sql`ALTER TABLE product_images ADD PRIMARY KEY (product_id)`.execute(db);
  // similar_products as 0008 left it (one vector per product again).
  await sql`
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
               FROM product_embeddings e WHERE e.model_id = %2$L AND ($2::text IS NULL OR e.category = $2)
               ORDER BY e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s)
               LIMIT $3) n
         JOIN products p ON p.id = n.product_id
         ORDER BY n.distance, (n.product_id = $4) DESC, n.product_id',
        m.dimension, m.id)
      USING q, in_category, k, of_product;
    END
    $fn$`.execute(db);
}
