// Keyword search (issue 10): a generated tsvector over SKU, brand, title and description with a GIN
// index, and an index for exact SKU matches typed in any case. SKU and brand are identifiers: the
// 'simple' configuration keeps them whole (no stemming, no stop words); title and description are prose
// in the catalog's language, stemmed with 'english' (the query side parses with both, src/search/keyword.ts).
// The column is generated, so every write path (ingest, import, admin) keeps it in step without code.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE products ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
      setweight(to_tsvector('simple'::regconfig, coalesce(sku, '')), 'A') ||
      setweight(to_tsvector('simple'::regconfig, coalesce(brand, '')), 'A') ||
      setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'B') ||
      setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')
    ) STORED`.execute(db);
  await sql`COMMENT ON COLUMN products.search_document IS ${sql.lit(
    'Full-text document of the product (SKU and brand whole, title and description stemmed in English), generated; searched by searchProducts(mode: KEYWORD | HYBRID).',
  )}`.execute(db);
  await sql`CREATE INDEX products_search_document_idx ON products USING gin (search_document)`.execute(db);
  await sql`CREATE INDEX products_lower_sku_idx ON products (lower(sku))`.execute(db);
  await sql`CREATE INDEX products_lower_brand_idx ON products (lower(brand))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS products_lower_brand_idx`.execute(db);
  await sql`DROP INDEX IF EXISTS products_lower_sku_idx`.execute(db);
  await sql`ALTER TABLE products DROP COLUMN IF EXISTS search_document`.execute(db);
}
