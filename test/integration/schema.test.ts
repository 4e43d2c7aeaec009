/**
 * The schema is a public interface for analysts: every table, view and column says what it is.
 *
 * @backend the migrations and the schema they leave
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrateDown, migrateToLatest, migrationStatus } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.close());

it('has a comment on every table, view and column outside the migration bookkeeping', async () => {
  const missing = await sql<{ what: string }>`
    SELECT c.relname || coalesce('.' || a.attname, '') AS what
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'v', 'p')
      AND c.relname NOT LIKE 'schema_migrations%'
      AND c.relname NOT IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'pgboss%')
      AND (
        (a.attname IS NULL AND obj_description(c.oid, 'pg_class') IS NULL)
        OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL AND c.relkind <> 'v')
      )
    ORDER BY 1`.execute(database.db);
  // Views document themselves as a whole; their columns are the tables' columns.
  const tablesWithoutComment = await sql<{ relname: string }>`
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
    WHERE c.relkind IN ('r', 'v') AND c.relname NOT LIKE 'schema_migrations%' AND obj_description(c.oid, 'pg_class') IS NULL`.execute(
    database.db,
  );
  expect(missing.rows.map((r) => r.what)).toEqual([]);
  expect(tablesWithoutComment.rows).toEqual([]);
});

it('migrates down one step and up again without losing the way back', async () => {
  const before = await migrationStatus(database.db);
  expect(before.every((m) => m.executedAt)).toBe(true);
  const undone = await migrateDown(database.db);
  expect(undone).toEqual([before.at(-1)!.name]);
  expect((await migrationStatus(database.db)).filter((m) => !m.executedAt).map((m) => m.name)).toEqual([before.at(-1)!.name]);
  expect(await migrateToLatest(database.db)).toEqual([before.at(-1)!.name]);
});

it('registers a model variant id (name@variant) with its own HNSW index', async () => {
  const { registerModel } = await import('../../src/models/lifecycle.js');
  const { ensureModelIndex, modelIndexName } = await import('../../src/models/hnsw.js');
  const model = await registerModel(database.db, {
    id: 'org/siglip2-test@fp16',
    source: 'org/siglip2-test',
    variant: 'fp16',
    dimension: 8,
  });
  await ensureModelIndex(database.db, model);
  const idx = await sql<{ n: string }>`SELECT count(*)::text AS n FROM pg_indexes WHERE indexname = ${modelIndexName(model.id)}`.execute(
    database.db,
  );
  expect(idx.rows[0]!.n).toBe('1');
  await expect(registerModel(database.db, { id: 'bad id!', source: 'x', variant: null, dimension: 8 })).rejects.toThrow(
    /not a valid model id/,
  );
});
