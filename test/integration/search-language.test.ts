/**
 * The full-text language (migration 0009, SEARCH_LANGUAGE) on both backends: the documents are rebuilt
 * with another text search configuration and the keyword query parses with the stored one; a server
 * whose documents are in another language than configured is refused at start (the embedded database
 * rebuilds them itself); the migration takes its first language from SEARCH_LANGUAGE.
 *
 * @backend the text search configurations each backend ships
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/connect.js';
import { migrateDown, migrateToLatest } from '../../src/db/migrate.js';
import { applySearchLanguage, storedSearchLanguage } from '../../src/db/search-language.js';
import { ErrorCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { keywordSearch } from '../../src/search/keyword.js';
import { buildServices } from '../../src/services.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
  await sql`
    INSERT INTO products (sku, title, description, category, brand) VALUES
      ('DE-1', 'Zwei Häuser aus Holz', 'Spielzeug für Kinder', 'toys', 'Holzwerk'),
      ('EN-1', 'Running shoes', 'Light trainers for running', 'shoes', 'Acme')`.execute(database.db);
}, 120_000);
afterAll(() => database?.close());

const skus = async (text: string) => (await keywordSearch(database.db, { text, filter: null, k: 10 })).map((m) => m.product.sku);

describe('SEARCH_LANGUAGE', () => {
  it('english by default: English stems match, German inflections do not', async () => {
    expect(await storedSearchLanguage(database.db)).toBe('english');
    expect(await skus('run')).toEqual(['EN-1']);
    expect(await skus('Haus')).toEqual([]); // 'Häuser' is no English word: kept as it is
  });

  it('rebuilt with german: the documents and the query both stem in German, identifiers still match whole', async () => {
    expect(await applySearchLanguage(database.db, 'german')).toBe(true);
    try {
      expect(await storedSearchLanguage(database.db)).toBe('german');
      expect(await skus('Haus')).toEqual(['DE-1']); // häuser → haus
      expect(await skus('Kind')).toEqual(['DE-1']); // kindern → kind
      expect(await skus('de-1')).toEqual(['DE-1']); // SKU: simple configuration, any case
      expect(await skus('holzwerk')).toEqual(['DE-1']);
      // a product written after the rebuild is indexed in German too (the column is generated)
      await sql`INSERT INTO products (sku, title, category) VALUES ('DE-2', 'Kleine Häuschen', 'toys')`.execute(database.db);
      expect(await skus('Häuschen')).toEqual(['DE-2']);
      expect(await applySearchLanguage(database.db, 'german')).toBe(false); // already so: nothing rewritten
    } finally {
      await applySearchLanguage(database.db, 'english');
    }
    expect(await skus('run')).toEqual(['EN-1']);
  });

  it('an unknown configuration is refused by name, and nothing changes', async () => {
    await expect(applySearchLanguage(database.db, 'klingon')).rejects.toMatchObject({ code: ErrorCode.BAD_USER_INPUT });
    expect(await storedSearchLanguage(database.db)).toBe('english');
  });

  it('at start: a server with documents in another language is refused; the embedded database rebuilds them', async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent', SEARCH_LANGUAGE: 'French', ...(database.url ? { DATABASE_URL: database.url } : {}) });
    const log = createLogger('silent');
    if (database.kind === 'postgres') {
      const own = await openDatabase({ kind: 'postgres', url: database.url! });
      await expect(buildServices(config, log, { database: own, model: 'none' })).rejects.toMatchObject({
        code: ErrorCode.CONFLICT,
        message: expect.stringMatching(/SEARCH_LANGUAGE is "french".*"english".*vps migrate/) as unknown,
      });
      expect(await storedSearchLanguage(database.db)).toBe('english');
    }
    const embedded = await openDatabase({ kind: 'pglite' });
    const services = await buildServices(config, log, { database: embedded, model: 'none' });
    try {
      expect(await storedSearchLanguage(services.database.db)).toBe('french');
    } finally {
      await services.close();
    }
  }, 120_000);

  it('migration 0009 takes its first language from SEARCH_LANGUAGE, and its down returns to english', async () => {
    const before = process.env.SEARCH_LANGUAGE;
    process.env.SEARCH_LANGUAGE = 'spanish';
    const fresh = await openDatabase({ kind: 'pglite' });
    try {
      await migrateToLatest(fresh.db);
      expect(await storedSearchLanguage(fresh.db)).toBe('spanish');
      await sql`INSERT INTO products (sku, title, category) VALUES ('ES-1', 'Zapatos rojos', 'shoes')`.execute(fresh.db);
      expect((await keywordSearch(fresh.db, { text: 'zapato', filter: null, k: 5 })).map((m) => m.product.sku)).toEqual(['ES-1']);
      const spanish = await sql<{ d: string }>`SELECT search_document::text AS d FROM products WHERE sku = 'ES-1'`.execute(fresh.db);
      expect(spanish.rows[0]!.d).toContain("'zapat'");
      // down past 0009: the english column of 0006 again, no settings table
      for (let step = 0; step < 5; step++) if ((await migrateDown(fresh.db)).some((n) => n.startsWith('0009_'))) break;
      expect((await sql<{ t: string | null }>`SELECT to_regclass('search_settings')::text AS t`.execute(fresh.db)).rows[0]!.t).toBeNull();
      const doc = await sql<{ d: string }>`SELECT search_document::text AS d FROM products WHERE sku = 'ES-1'`.execute(fresh.db);
      expect(doc.rows[0]!.d).toContain("'zapato'"); // english stems zapatos → zapato, spanish → zapat
    } finally {
      if (before === undefined) delete process.env.SEARCH_LANGUAGE;
      else process.env.SEARCH_LANGUAGE = before;
      await fresh.close();
    }
  }, 120_000);
});
