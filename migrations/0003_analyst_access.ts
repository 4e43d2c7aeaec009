// SQL surface for analysts: a view of products with the active model's vectors, a similarity
// function, and a read-only role to grant to people who query the database directly.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE VIEW product_vectors AS
    SELECT p.id AS product_id, p.sku, p.title, p.category, p.brand, p.price, p.currency, p.in_stock,
           e.model_id, e.embedding, e.image_sha256, e.created_at AS embedded_at
    FROM products p
    JOIN product_embeddings e ON e.product_id = p.id
    JOIN embedding_models m ON m.id = e.model_id AND m.is_active`.execute(db);
  await sql`COMMENT ON VIEW product_vectors IS ${sql.lit(
    'Products with their vector from the active embedding model (one row per product that has one). Cosine distance: a.embedding <=> b.embedding.',
  )}`.execute(db);

  // plpgsql so that the statement can name the active model and its dimension literally: that is
  // what lets PostgreSQL use the model's partial HNSW index. Iterative scans keep filtered results
  // complete (pgvector 0.8+); SET on the function keeps the settings local to each call.
  await sql`
    CREATE FUNCTION similar_products(of_product bigint, k integer DEFAULT 10, in_category text DEFAULT NULL)
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
               FROM product_embeddings e JOIN products p ON p.id = e.product_id
               WHERE e.model_id = %2$L AND ($2::text IS NULL OR p.category = $2)
               ORDER BY e.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s)
               LIMIT $3) n
         JOIN products p ON p.id = n.product_id
         ORDER BY n.distance, (n.product_id = $4) DESC, n.product_id',
        m.dimension, m.id)
      USING q, in_category, k, of_product;
    END
    $fn$`.execute(db);
  await sql`COMMENT ON FUNCTION similar_products(bigint, integer, text) IS ${sql.lit(
    'The k products whose images are most similar to the given product (itself first), by the active model, optionally within one category. score = cosine similarity.',
  )}`.execute(db);

  // A read-only role for analysts (NOLOGIN: grant it to login roles). Roles are cluster-wide, so it is
  // created once, and only where the migrating user may create roles; privileges are per database.
  await sql`
    DO $do$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vps_analyst') THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
          CREATE ROLE vps_analyst NOLOGIN;
        ELSE
          RAISE NOTICE 'vps_analyst role not created: % may not create roles', current_user;
          RETURN;
        END IF;
      END IF;
      EXECUTE format('GRANT CONNECT ON DATABASE %I TO vps_analyst', current_database());
      GRANT USAGE ON SCHEMA public TO vps_analyst;
      GRANT SELECT ON ALL TABLES IN SCHEMA public TO vps_analyst;
      ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO vps_analyst;
      GRANT EXECUTE ON FUNCTION similar_products(bigint, integer, text) TO vps_analyst;
    END
    $do$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DO $do$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vps_analyst') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM vps_analyst;
        REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM vps_analyst;
        REVOKE USAGE ON SCHEMA public FROM vps_analyst;
        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM vps_analyst', current_database());
      END IF;
    END
    $do$`.execute(db);
  await sql`DROP FUNCTION similar_products(bigint, integer, text)`.execute(db);
  await sql`DROP VIEW product_vectors`.execute(db);
}
