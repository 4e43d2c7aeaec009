/**
 * Concurrent transactions must never interleave, in particular on PGlite's single session: a
 * rollback in one request must not undo another's writes, and no reader sees uncommitted rows.
 *
 * @backend PGlite runs every statement on one session: interleaved transactions
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { upsertProductRows, type ProductWrite } from '../../src/db/products.js';
import { sql } from 'kysely';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';

const write = (sku: string, category = 'concurrency'): ProductWrite => ({
  sku,
  title: sku,
  description: null,
  category,
  brand: null,
  price: 1,
  currency: null,
  inStock: true,
  attributes: {},
  imageUrl: null,
  imageSha256: null,
});

let t: TestService;
beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
}, 120_000);
afterAll(() => t?.stop());

describe('concurrent transactions', () => {
  it('keep committed writes and drop rolled-back ones, with readers never seeing partial work', async () => {
    const db = t.service.services.database.db;
    const rounds = 40;
    const sawUncommitted: string[] = [];
    const tasks = Array.from({ length: rounds }, (_, i) => {
      const fail = i % 2 === 1;
      return db
        .transaction()
        .execute(async (trx) => {
          await upsertProductRows(trx, [write(`tx-${i}-a`), write(`tx-${i}-b`)]);
          await new Promise((r) => setTimeout(r, 2)); // give other requests a chance to interleave
          await upsertProductRows(trx, [write(`tx-${i}-c`)]);
          if (fail) throw new Error('roll back');
        })
        .catch((e: Error) => {
          if (e.message !== 'roll back') throw e;
        });
    });
    const readers = Array.from({ length: rounds }, async () => {
      const rows = await db.selectFrom('products').select('sku').where('category', '=', 'concurrency').execute();
      // Every committed transaction wrote a, b and c together: a reader sees all three or none.
      const byTx = new Map<string, number>();
      for (const r of rows) {
        const tx = r.sku.slice(0, r.sku.lastIndexOf('-'));
        byTx.set(tx, (byTx.get(tx) ?? 0) + 1);
      }
      for (const [tx, n] of byTx) if (n !== 3) sawUncommitted.push(`${tx}:${n}`);
    });
    await Promise.all([...tasks, ...readers]);

    const rows = await db.selectFrom('products').select('sku').where('category', '=', 'concurrency').orderBy('sku').execute();
    const expected = Array.from({ length: rounds }, (_, i) => i)
      .filter((i) => i % 2 === 0)
      .flatMap((i) => [`tx-${i}-a`, `tx-${i}-b`, `tx-${i}-c`])
      .sort();
    expect(rows.map((r) => r.sku)).toEqual(expected);
    expect(sawUncommitted).toEqual([]);
  });

  it('serve concurrent GraphQL upserts and reads, failed calls writing nothing', async () => {
    const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { sku } }`;
    const calls = Array.from({ length: 20 }, (_, i) => {
      const products = Array.from({ length: 5 }, (_, j) => ({ sku: `gql-${i}-${j}`, title: 't', category: 'gql' }));
      if (i % 4 === 3) products.push({ sku: `gql-${i}-0`, title: 't', category: 'gql' }); // duplicate: whole call refused
      return t.gql(UPSERT, { p: products }, { admin: true });
    });
    const reads = Array.from({ length: 20 }, () =>
      t.gql(`{ products(filter: { category: "gql" }, first: 500) { totalCount edges { node { sku } } } }`),
    );
    const results = await Promise.all([...calls, ...reads]);
    for (const [i, r] of results.slice(0, 20).entries()) {
      if (i % 4 === 3) expect(codes(r)).toEqual(['BAD_USER_INPUT']);
      else expect(r.errors).toBeUndefined();
    }
    for (const r of results.slice(20)) {
      expect(r.errors).toBeUndefined();
      expect(r.data.products.totalCount % 5).toBe(0); // whole calls only
    }
    const final = await t.gql(`{ products(filter: { category: "gql" }) { totalCount } }`);
    expect(final.data.products.totalCount).toBe(15 * 5);
  });
});

describe('an upsert that fails inside the database', () => {
  it('writes nothing of its call, on either backend, while concurrent calls and readers go on', async () => {
    // A failure after the products rows are written: the images statement of the same transaction fails
    // for "poison" SKUs (a trigger, as a constraint or a lost connection would). Validation passes, so
    // only the transaction around the ingest's statements can undo the products rows: on PostgreSQL as
    // well as on PGlite (where the concurrent calls share one session).
    const db = t.service.services.database.db;
    await sql`CREATE FUNCTION fail_poison_image() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF (SELECT sku FROM products WHERE id = NEW.product_id) LIKE 'poison-%' THEN
          RAISE EXCEPTION 'poisoned image row';
        END IF;
        RETURN NEW;
      END $$`.execute(db);
    await sql`CREATE TRIGGER fail_poison_image BEFORE INSERT ON product_images FOR EACH ROW EXECUTE FUNCTION fail_poison_image()`.execute(
      db,
    );
    try {
      const photo = (await renderProductImage('circle', 'red', { size: 64 })).toString('base64');
      const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { sku } }`;
      const call = (i: number) => {
        const prefix = i % 2 === 1 ? 'poison' : 'fine';
        const products = Array.from({ length: 5 }, (_, j) => ({ sku: `${prefix}-${i}-${j}`, title: 't', category: 'atomic' }));
        products[4] = { ...products[4]!, image: { base64: photo } } as (typeof products)[number]; // the last one's image fails
        return t.gql(UPSERT, { p: products }, { admin: true });
      };
      const reads = Array.from({ length: 12 }, () => t.gql(`{ products(filter: { category: "atomic" }, first: 500) { totalCount } }`));
      const results = await Promise.all([...Array.from({ length: 12 }, (_, i) => call(i)), ...reads]);
      for (const [i, r] of results.slice(0, 12).entries()) {
        if (i % 2 === 1) expect(codes(r), `call ${i}`).toEqual(['INTERNAL_SERVER_ERROR']);
        else expect(r.errors, `call ${i}`).toBeUndefined();
      }
      for (const r of results.slice(12)) expect(r.data.products.totalCount % 5).toBe(0); // whole calls only
      const skus = await db.selectFrom('products').select('sku').where('category', '=', 'atomic').execute();
      expect(skus.filter((r) => r.sku.startsWith('poison-'))).toEqual([]);
      expect(skus).toHaveLength(6 * 5);
    } finally {
      await sql`DROP TRIGGER fail_poison_image ON product_images`.execute(db);
      await sql`DROP FUNCTION fail_poison_image()`.execute(db);
    }
  });
});

describe('embedded database psql port', () => {
  it('lets an analyst query with psql, and an open psql transaction never swallows app statements', async () => {
    const database = await openDatabase({ kind: 'pglite', psqlPort: 0 });
    try {
      await migrateToLatest(database.db);
      expect(database.psqlUrl).toMatch(/^postgresql:\/\/postgres:[^@]+@127\.0\.0\.1:[1-9]\d*\/postgres/);
      const analyst = new pg.Client({ connectionString: database.psqlUrl! });
      await analyst.connect();
      try {
        await upsertProductRows(database.db, [write('before', 'psql')]);
        expect((await analyst.query(`SELECT sku FROM products WHERE category = 'psql'`)).rows).toEqual([{ sku: 'before' }]);

        await analyst.query('BEGIN');
        await analyst.query(`INSERT INTO products (sku, title, category) VALUES ('from-psql', 't', 'psql')`);
        // The app's write waits for the analyst's transaction instead of running inside it.
        let appDone = false;
        const app = upsertProductRows(database.db, [write('from-app', 'psql')]).then(() => (appDone = true));
        await new Promise((r) => setTimeout(r, 200));
        expect(appDone).toBe(false);
        await analyst.query('ROLLBACK');
        await app;
        const skus = await database.db.selectFrom('products').select('sku').where('category', '=', 'psql').orderBy('sku').execute();
        expect(skus.map((r) => r.sku)).toEqual(['before', 'from-app']);
      } finally {
        await analyst.end();
      }
    } finally {
      await database.close();
    }
  });
});
