/**
 * The catalog's full-text language (migrations/0009_search_language.ts): the text search configuration
 * (regconfig) products.search_document stems titles and descriptions with, kept in search_settings.
 * The keyword query reads it in its own statement, so only the stored column and this row must agree;
 * SEARCH_LANGUAGE says what they should be, and changing it rebuilds the column (a table rewrite).
 */
import { sql, type Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { DB } from './types.js';

/** The stored configuration's name (e.g. 'english'). */
export async function storedSearchLanguage(db: Kysely<DB>): Promise<string> {
  const { rows } = await sql<{ language: string }>`SELECT language::text AS language FROM search_settings`.execute(db);
  return rows[0]?.language ?? 'english';
}

/** Whether the stored language is `language` (compared as regconfigs: 'english' = 'pg_catalog.english'). */
async function isStored(db: Kysely<DB>, language: string): Promise<boolean> {
  try {
    const { rows } = await sql<{ same: boolean }>`SELECT language = ${language}::regconfig AS same FROM search_settings`.execute(db);
    return rows[0]?.same === true;
  } catch (err) {
    // 42704 undefined_object: no such text search configuration.
    if ((err as { code?: unknown }).code === '42704')
      throw new AppError(ErrorCode.BAD_USER_INPUT, `SEARCH_LANGUAGE: the database has no text search configuration "${language}"`, {
        setting: 'SEARCH_LANGUAGE',
      });
    throw err;
  }
}

/**
 * Rebuilds products.search_document with `language` and records it, in one transaction (the table is
 * rewritten and locked meanwhile: keyword queries wait, then see the new documents). No-op when stored.
 * Returns whether it rebuilt.
 */
export async function applySearchLanguage(db: Kysely<DB>, language: string): Promise<boolean> {
  if (await isStored(db, language)) return false;
  await db.transaction().execute(async (trx) => {
    const lang = sql.lit(language);
    await sql`DROP INDEX IF EXISTS products_search_document_idx`.execute(trx);
    await sql`ALTER TABLE products DROP COLUMN IF EXISTS search_document`.execute(trx);
    await sql`
      ALTER TABLE products ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, coalesce(sku, '')), 'A') ||
        setweight(to_tsvector('simple'::regconfig, coalesce(brand, '')), 'A') ||
        setweight(to_tsvector(${lang}::regconfig, coalesce(title, '')), 'B') ||
        setweight(to_tsvector(${lang}::regconfig, coalesce(description, '')), 'C')
      ) STORED`.execute(trx);
    await sql`COMMENT ON COLUMN products.search_document IS ${sql.lit(
      `Full-text document of the product (SKU and brand whole, title and description with the '${language}' configuration: search_settings.language), generated; searched by searchProducts(mode: KEYWORD | HYBRID).`,
    )}`.execute(trx);
    await sql`CREATE INDEX products_search_document_idx ON products USING gin (search_document)`.execute(trx);
    await sql`UPDATE search_settings SET language = ${language}::regconfig`.execute(trx);
  });
  return true;
}

/** For a server the service does not migrate: a clear refusal when the stored language is another. */
export async function checkSearchLanguage(db: Kysely<DB>, language: string): Promise<void> {
  if (await isStored(db, language)) return;
  const stored = await storedSearchLanguage(db);
  throw new AppError(
    ErrorCode.CONFLICT,
    `SEARCH_LANGUAGE is "${language}" but the catalog's full-text documents are built with "${stored}": ` +
      'apply it first with `vps migrate` (or npm run migrate), which rebuilds them, or set SEARCH_LANGUAGE to the stored language',
    { setting: 'SEARCH_LANGUAGE', stored },
  );
}
