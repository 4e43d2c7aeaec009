/**
 * The similarity query: vector distance and relational filters in one SQL statement, executed with
 * the strategy chosen for it (strategy.ts), inside one transaction so SET LOCAL stays local.
 */
import { expressionBuilder, sql, type Kysely, type Transaction } from 'kysely';
import { productFilterCondition, type ProductFilter } from '../db/products.js';
import type { DB } from '../db/types.js';
import { chooseStrategy, exactThreshold, hnswSettings, type Strategy } from './strategy.js';

export interface NeighbourQuery {
  model: { id: string; dimension: number };
  /** Query vector in pgvector text form '[…]'. */
  vector: string;
  filter: ProductFilter | null;
  k: number;
  /** Ranks this product first among equals (a productId query's own product). */
  preferProductId?: string;
  /** Force a strategy (benchmarks, tests); normally chosen from the filter's selectivity. */
  strategy?: Strategy;
}

export interface Neighbour {
  productId: string;
  distance: number;
}

export interface NeighbourResult {
  neighbours: Neighbour[];
  strategy: Strategy;
  /** Matching vectors counted up to the exact-scan threshold (a lower bound when at the threshold). */
  matchingAtLeast: number;
  /** True when an HNSW walk came back short and the query was answered exactly instead. */
  fellBack: boolean;
}

const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;

function modelParts(model: { id: string; dimension: number }) {
  // The model id is a literal (not a parameter) so the planner can match the model's partial index.
  if (!MODEL_ID.test(model.id) || !Number.isInteger(model.dimension) || model.dimension < 1) throw new Error('invalid model');
  return { id: sql.lit(model.id), dim: sql.raw(String(model.dimension)) };
}

/** Counts the vectors that pass the filter, stopping at `limit`. */
async function countMatching(trx: Transaction<DB>, q: NeighbourQuery, limit: number): Promise<number> {
  const { id } = modelParts(q.model);
  const inner = trx
    .selectFrom('product_embeddings as e')
    .innerJoin('products as p', 'p.id', 'e.product_id')
    .select(sql`1`.as('one'))
    .where(sql<boolean>`e.model_id = ${id}`)
    .where(productFilterCondition(q.filter, 'p'))
    .limit(limit);
  const row = await trx.selectFrom(inner.as('m')).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

function order(q: NeighbourQuery) {
  return q.preferProductId
    ? sql`distance, (product_id = ${q.preferProductId}) DESC, product_id`
    : sql`distance, product_id`;
}

type Row = { product_id: string; distance: number };

function exactStatement(q: NeighbourQuery) {
  const { id } = modelParts(q.model);
  // Distance on the bare column: it does not match the HNSW expression, so no index walk is used.
  return sql<Row>`
    SELECT e.product_id, (e.embedding <=> ${q.vector}::halfvec)::float8 AS distance
    FROM product_embeddings e JOIN products p ON p.id = e.product_id
    WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')(expressionBuilder<any, any>())}
    ORDER BY ${order(q)}
    LIMIT ${q.k}`;
}

async function applyHnswSettings(trx: Transaction<DB>, k: number): Promise<void> {
  const { efSearch, maxScanTuples } = hnswSettings(k);
  await sql`SELECT set_config('hnsw.ef_search', ${String(efSearch)}, true),
                   set_config('hnsw.iterative_scan', 'relaxed_order', true),
                   set_config('hnsw.max_scan_tuples', ${String(maxScanTuples)}, true)`.execute(trx);
}

function hnswStatement(q: NeighbourQuery) {
  const { id, dim } = modelParts(q.model);
  // relaxed_order may return neighbours slightly out of order: take k from the walk, then sort.
  return sql<Row>`
    WITH walk AS MATERIALIZED (
      SELECT e.product_id, (e.embedding::halfvec(${dim}) <=> ${q.vector}::halfvec(${dim}))::float8 AS distance
      FROM product_embeddings e JOIN products p ON p.id = e.product_id
      WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')(expressionBuilder<any, any>())}
      ORDER BY e.embedding::halfvec(${dim}) <=> ${q.vector}::halfvec(${dim})
      LIMIT ${q.k}
    )
    SELECT product_id, distance FROM walk ORDER BY ${order(q)}`;
}

const toNeighbours = (rows: Row[]): Neighbour[] => rows.map((r) => ({ productId: String(r.product_id), distance: Number(r.distance) }));

async function exact(trx: Transaction<DB>, q: NeighbourQuery): Promise<Neighbour[]> {
  return toNeighbours((await exactStatement(q).execute(trx)).rows);
}

async function hnsw(trx: Transaction<DB>, q: NeighbourQuery): Promise<Neighbour[]> {
  await applyHnswSettings(trx, q.k);
  return toNeighbours((await hnswStatement(q).execute(trx)).rows);
}

/** The plan PostgreSQL picks for a strategy's statement (EXPLAIN), for operators and tests. */
export async function explainNeighbours(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy, analyze = false): Promise<string> {
  return db.transaction().execute(async (trx) => {
    if (strategy === 'hnsw') await applyHnswSettings(trx, q.k);
    const statement = strategy === 'hnsw' ? hnswStatement(q) : exactStatement(q);
    const plan = await sql<{ 'QUERY PLAN': string }>`EXPLAIN ${analyze ? sql`(ANALYZE, BUFFERS)` : sql``} ${statement}`.execute(trx);
    return plan.rows.map((r) => r['QUERY PLAN']).join('\n');
  });
}

export async function nearestNeighbours(db: Kysely<DB>, q: NeighbourQuery): Promise<NeighbourResult> {
  return db.transaction().execute(async (trx) => {
    const threshold = exactThreshold(q.k);
    const matching = await countMatching(trx, q, threshold);
    const strategy = q.strategy ?? chooseStrategy(matching, q.k);
    if (strategy === 'exact') return { neighbours: await exact(trx, q), strategy, matchingAtLeast: matching, fellBack: false };
    const walked = await hnsw(trx, q);
    if (walked.length >= Math.min(q.k, matching)) return { neighbours: walked, strategy, matchingAtLeast: matching, fellBack: false };
    return { neighbours: await exact(trx, q), strategy, matchingAtLeast: matching, fellBack: true };
  });
}
