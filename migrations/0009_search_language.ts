// The full-text language (issue 10): title and description were stemmed with 'english' (0006); the
// catalog's language is now a setting. One row in search_settings holds the text search configuration
// (a regconfig: english, german, french, simple, …) that products.search_document is built with, and
// the keyword query reads it in its own statement (src/search/keyword.ts), so the query is always parsed
// the way the documents were indexed, on the primary and on every replica alike.
//
// One language per catalog rather than a language column per product: the generated column then stays
// a plain immutable expression with one GIN index, and a query is parsed once, not once per language.
// The first language is SEARCH_LANGUAGE where the migrating process has it (the service's setting; unset:
// english, what 0006 built); later changes rebuild the column (src/db/search-language.ts: `vps migrate`,
// or at start for the embedded database). Migrations import no application code, so the rebuild's DDL
// is written out here too.
import { sql, type Kysely } from 'kysely';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

async function rebuild(db: Kysely<unknown>, language: string): Promise<void> {
  const lang = sql.lit(language);
  await sql`DROP INDEX IF EXISTS products_search_document_idx`.execute(db);
  await sql`ALTER TABLE products DROP COLUMN IF EXISTS search_document`.execute(db);
  await sql`
    ALTER TABLE products ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
      setweight(to_tsvector('simple'::regconfig, coalesce(sku, '')), 'A') ||
      setweight(to_tsvector('simple'::regconfig, coalesce(brand, '')), 'A') ||
      setweight(to_tsvector(${lang}::regconfig, coalesce(title, '')), 'B') ||
      setweight(to_tsvector(${lang}::regconfig, coalesce(description, '')), 'C')
    ) STORED`.execute(db);
  await sql`COMMENT ON COLUMN products.search_document IS ${sql.lit(
    `Full-text document of the product (SKU and brand whole, title and description with the '${language}' configuration: search_settings.language), generated; searched by searchProducts(mode: KEYWORD | HYBRID).`,
  )}`.execute(db);
  await sql`CREATE INDEX products_search_document_idx ON products USING gin (search_document)`.execute(db);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  const language = (process.env.SEARCH_LANGUAGE ?? '').trim().toLowerCase() || 'english';
  if (!IDENTIFIER.test(language)) throw new Error('SEARCH_LANGUAGE must name a text search configuration (e.g. english, german, simple)');
  // Unknown configurations fail here, with PostgreSQL's own message, before anything changes.
  await sql`SELECT ${language}::regconfig`.execute(db);
  await sql`
    CREATE TABLE search_settings (
      id boolean PRIMARY KEY DEFAULT true CHECK (id),
      language regconfig NOT NULL
    )`.execute(db);
  await sql`COMMENT ON TABLE search_settings IS ${sql.lit(
    'One row: the text search configuration products.search_document is built with (title and description); keyword queries are parsed with it.',
  )}`.execute(db);
  await sql`COMMENT ON COLUMN search_settings.id IS 'Always true: the table holds one row.'`.execute(db);
  await sql`COMMENT ON COLUMN search_settings.language IS ${sql.lit(
    'Text search configuration (regconfig) of titles and descriptions in products.search_document; set by SEARCH_LANGUAGE (vps migrate rebuilds the column when it changes).',
  )}`.execute(db);
  await sql`INSERT INTO search_settings (language) VALUES (${language}::regconfig)`.execute(db);
  // 0006 built the column with english: only another language costs the table rewrite.
  if (language !== 'english') await rebuild(db, language);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ language: string }>`SELECT language::text AS language FROM search_settings`.execute(db);
  if (rows[0] && rows[0].language !== 'english') await rebuild(db, 'english');
  await sql`DROP TABLE search_settings`.execute(db);
}
