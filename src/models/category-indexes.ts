/**
 * Per-category HNSW indexes: a partial HNSW index over one model's vectors of one category, for the
 * categories where neither of the two plain strategies is fast (search/strategy.ts).
 *
 * Why: at 1 000 000 vectors a category holding 1 % of them (10 000) costs 13–23 ms read exactly (every
 * row's heap page and distance) and 21 ms walked through the model's whole index (the iterative scan
 * passes over ~99 filtered-out neighbours for each match), while the same category's own index answers
 * in 2.5–3.3 ms (BENCHMARKS.md "Search", warm buffers). A category below `minVectors` is cheap to read
 * exactly; one above `maxShare` of the model's vectors passes the whole-index walk quickly (a match
 * every few neighbours) and would only duplicate most of that index.
 *
 * Nothing in search names these indexes: a query whose filter is `category = X` (with or without other
 * filters) carries the index's predicate, and PostgreSQL's planner takes the smaller index by cost. Writes
 * keep them current like any partial index (the category is carried on the vector row, migration 0008),
 * so a product that changes category moves between them in its own transaction.
 *
 * Which category an index serves is recorded in the index's comment (`\di+` shows it to analysts), so the
 * database's catalog is the only record: an index dropped by hand is simply built again by the next sync.
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { loadConfig } from '../config.js';
import type { Database } from '../db/connect.js';
import type { DB, Db } from '../db/types.js';
import { buildsIndexConcurrently, createIndexSql, dropIndexNamed, onBuildSession } from './hnsw.js';

export interface CategoryIndexPolicy {
  /** Categories with at least this many of the model's vectors get their own index; 0 turns them off. */
  minVectors: number;
  /** …and at most this share of the model's vectors (larger ones walk the model's index quickly). */
  maxShare: number;
}

/** SEARCH_CATEGORY_INDEX_MIN_VECTORS / _MAX_SHARE as they are when unset (the defaults, and why, are in config.ts). */
export const DEFAULT_CATEGORY_INDEX_POLICY: CategoryIndexPolicy = loadConfig({}).search.categoryIndexes;

const PREFIX = 'product_embeddings_hnsw_category_';
const COMMENT_PREFIX = 'vps category index ';

/** Stable, valid name for a model's category index (categories are free text). */
export function categoryIndexName(modelId: string, category: string): string {
  return PREFIX + createHash('sha256').update(`${modelId}\u0000${category}`).digest('hex').slice(0, 16);
}

/** The categories that should have an index, from the model's vectors per category and in all. */
export function wantedCategories(counts: ReadonlyMap<string, number>, total: number, policy: CategoryIndexPolicy): string[] {
  if (policy.minVectors <= 0) return [];
  return [...counts]
    .filter(([, n]) => n >= policy.minVectors && n <= policy.maxShare * total)
    .map(([c]) => c)
    .sort();
}

export interface CategoryIndex {
  modelId: string;
  category: string;
  name: string;
  valid: boolean;
}

/** The category indexes in the database (of one model, or all). */
export async function listCategoryIndexes(db: Db, modelId?: string): Promise<CategoryIndex[]> {
  const r = await sql<{ name: string; comment: string | null; valid: boolean }>`
    SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment, i.indisvalid AS valid
    FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
    WHERE c.relkind = 'i' AND c.relname LIKE ${PREFIX + '%'}`.execute(db);
  const out: CategoryIndex[] = [];
  for (const row of r.rows) {
    const of = parseComment(row.comment);
    // An index whose comment is missing (a build interrupted between CREATE and COMMENT) belongs to no
    // one we can name: it is listed with an empty model so that sync drops it.
    const entry = { modelId: of?.model ?? '', category: of?.category ?? '', name: row.name, valid: row.valid && of !== null };
    if (modelId === undefined || entry.modelId === modelId || entry.modelId === '') out.push(entry);
  }
  return out;
}

function parseComment(comment: string | null): { model: string; category: string } | null {
  if (!comment?.startsWith(COMMENT_PREFIX)) return null;
  try {
    const v = JSON.parse(comment.slice(COMMENT_PREFIX.length)) as { model?: unknown; category?: unknown };
    return typeof v.model === 'string' && typeof v.category === 'string' ? { model: v.model, category: v.category } : null;
  } catch {
    return null;
  }
}

async function vectorsPerCategory(db: Db, modelId: string): Promise<{ counts: Map<string, number>; total: number }> {
  const r = await sql<{ category: string | null; n: string }>`
    SELECT category, count(*)::text AS n FROM product_embeddings WHERE model_id = ${modelId} GROUP BY category`.execute(db);
  // Vectors without a category count towards the total (the share) but get no index.
  const counts = new Map<string, number>();
  let total = 0;
  for (const row of r.rows) {
    total += Number(row.n);
    if (row.category !== null) counts.set(row.category, Number(row.n));
  }
  return { counts, total };
}

async function buildIndex(
  db: Kysely<DB>,
  model: { id: string; dimension: number },
  category: string,
  concurrently: boolean,
): Promise<void> {
  const name = categoryIndexName(model.id, category);
  await onBuildSession(db, concurrently, async (c) => {
    await createIndexSql(model, concurrently, { name, category }).execute(c);
    await sql`COMMENT ON INDEX ${sql.id(name)} IS ${sql.lit(COMMENT_PREFIX + JSON.stringify({ model: model.id, category }))}`.execute(c);
  });
}

export interface CategoryIndexSync {
  built: string[];
  dropped: string[];
  kept: string[];
}

/**
 * Makes the model's category indexes match its vectors: builds the missing ones (CONCURRENTLY on
 * PostgreSQL, so writes go on), drops those of categories that left the policy's range, replaces invalid
 * ones (a failed concurrent build). Run after a reindex builds the model's index, and by
 * `vps model categories ID` after imports that change the categories' sizes.
 */
export async function syncCategoryIndexes(
  db: Kysely<DB>,
  model: { id: string; dimension: number },
  kind: Database['kind'],
  policy: CategoryIndexPolicy = DEFAULT_CATEGORY_INDEX_POLICY,
): Promise<CategoryIndexSync> {
  const concurrently = buildsIndexConcurrently(kind);
  const { counts, total } = await vectorsPerCategory(db, model.id);
  const wanted = new Set(wantedCategories(counts, total, policy));
  const existing = await listCategoryIndexes(db, model.id);
  const result: CategoryIndexSync = { built: [], dropped: [], kept: [] };
  const have = new Set<string>();
  for (const index of existing) {
    if (index.valid && index.modelId === model.id && wanted.has(index.category)) {
      have.add(index.category);
      result.kept.push(index.category);
      continue;
    }
    await dropIndexNamed(db, index.name, concurrently);
    if (index.modelId === model.id && !wanted.has(index.category)) result.dropped.push(index.category);
  }
  for (const category of [...wanted].sort()) {
    if (have.has(category)) continue;
    await buildIndex(db, model, category, concurrently);
    result.built.push(category);
  }
  for (const list of [result.built, result.dropped, result.kept]) list.sort();
  return result;
}

/**
 * Drops every category index of a model (its vectors were deleted, or a bulk load is about to refill
 * them), plainly, as dropModelIndex drops the model's own.
 */
export async function dropCategoryIndexes(db: Kysely<DB>, modelId: string): Promise<void> {
  for (const index of await listCategoryIndexes(db, modelId)) {
    if (index.modelId === modelId) await dropIndexNamed(db, index.name, false);
  }
}
