/**
 * Each model's HNSW index: its name, its one definition, and whether it may be built CONCURRENTLY.
 * A partial expression index over embedding::halfvec(dimension) for the model's rows; search uses the
 * same expression and the model id as a literal so the planner matches it (docs/ARCHITECTURE.md).
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/connect.js';
import type { DB, Db } from '../db/types.js';
import { MODEL_ID } from '../hub/ids.js';

export type IndexState = 'valid' | 'invalid' | 'missing';

/**
 * The concurrent-build policy: on PostgreSQL the index is built CONCURRENTLY so upserts keep writing
 * vectors meanwhile; PGlite is one session, where CONCURRENTLY gains nothing and cannot run.
 */
export function buildsIndexConcurrently(kind: Database['kind']): boolean {
  return kind === 'postgres';
}

/** Stable, valid index name for a model id (ids may contain '/' and '.'). */
export function modelIndexName(id: string): string {
  const slug = id
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .slice(0, 32);
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 8);
  return `product_embeddings_hnsw_${slug}_${hash}`;
}

/**
 * The one definition of an HNSW index over a model's vectors: the model's own, or (with `category`) one
 * category's (models/category-indexes.ts), so that search's statement matches either. Literals, because
 * an index predicate cannot take parameters.
 */
export function createIndexSql(
  model: { id: string; dimension: number },
  concurrently: boolean,
  only?: { name: string; category: string },
) {
  if (!MODEL_ID.test(model.id) || !Number.isInteger(model.dimension)) throw new Error('invalid model for index');
  return sql`
    CREATE INDEX ${concurrently ? sql`CONCURRENTLY` : sql``} IF NOT EXISTS ${sql.id(only?.name ?? modelIndexName(model.id))} ON product_embeddings
    USING hnsw ((embedding::halfvec(${sql.raw(String(model.dimension))})) halfvec_cosine_ops)
    WITH (m = 16, ef_construction = 64)
    WHERE model_id = ${sql.lit(model.id)} ${only ? sql`AND category = ${sql.lit(only.category)}` : sql``}`;
}

/** Creates the index if missing, plainly (registration: ingest then maintains it row by row). */
export async function ensureModelIndex(db: Db, model: { id: string; dimension: number }): Promise<void> {
  await createIndexSql(model, false).execute(db);
}

export async function dropModelIndex(db: Db, id: string): Promise<void> {
  await dropIndexNamed(db, modelIndexName(id), false);
}

/** Drops one of these indexes if it exists; CONCURRENTLY (outside a transaction) lets writes go on. */
export async function dropIndexNamed(db: Db, name: string, concurrently: boolean): Promise<void> {
  await sql`DROP INDEX ${concurrently ? sql`CONCURRENTLY` : sql``} IF EXISTS ${sql.id(name)}`.execute(db);
}

/** 'valid', 'invalid' (a failed concurrent build left it) or 'missing'. */
export async function modelIndexState(db: Db, modelId: string): Promise<IndexState> {
  const r = await sql<{ valid: boolean }>`
    SELECT i.indisvalid AS valid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
    WHERE c.relname = ${modelIndexName(modelId)} AND c.relkind = 'i'`.execute(db);
  if (r.rows.length === 0) return 'missing';
  return r.rows[0]!.valid ? 'valid' : 'invalid';
}

/**
 * Builds the index after a bulk load (or for an activation that finds it missing), replacing an
 * invalid one a failed concurrent build left behind.
 */
export async function buildModelIndex(db: Kysely<DB>, model: { id: string; dimension: number }, kind: Database['kind']): Promise<void> {
  const concurrently = buildsIndexConcurrently(kind);
  const state = await modelIndexState(db, model.id);
  if (state === 'valid') return;
  if (state === 'invalid') await dropIndexNamed(db, modelIndexName(model.id), concurrently);
  await onBuildSession(db, concurrently, (c) => createIndexSql(model, concurrently).execute(c));
}

/**
 * Runs an index build on one pooled connection set up for it: a concurrent build (PostgreSQL) gets
 * 512 MB of maintenance memory and no statement timeout (a build is a job, not a request: it may
 * outlast the request path's statement_timeout), reset before the connection goes back to the pool.
 */
export async function onBuildSession(db: Kysely<DB>, concurrently: boolean, build: (c: Kysely<DB>) => Promise<unknown>): Promise<void> {
  await db.connection().execute(async (c) => {
    if (concurrently) await sql`SET maintenance_work_mem = '512MB'`.execute(c);
    if (concurrently) await sql`SET statement_timeout = 0`.execute(c);
    try {
      await build(c);
    } finally {
      if (concurrently) await sql`RESET maintenance_work_mem`.execute(c);
      if (concurrently) await sql`RESET statement_timeout`.execute(c);
    }
  });
}
