/**
 * The similarity query: vector distance and relational filters in one SQL statement, executed with
 * the strategy chosen for it (strategy.ts), inside one transaction so SET LOCAL stays local.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { productFilterCondition, type ProductFilter } from '../db/products.js';
import { MODEL_ID } from '../models/ids.js';
import type { DB } from '../db/types.js';
import { chooseStrategy, hnswSettings, type Strategy } from './strategy.js';

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
  /** The planner's estimate of how many vectors pass the filters (what the strategy was chosen on). */
  estimatedMatches: number;
  /** True when an HNSW walk came back short and the query was answered exactly instead. */
  fellBack: boolean;
}

function modelParts(model: { id: string; dimension: number }) {
  // The model id is a literal (not a parameter) so the planner can match the model's partial index.
  if (!MODEL_ID.test(model.id) || !Number.isInteger(model.dimension) || model.dimension < 1) throw new Error('invalid model');
  return { id: sql.lit(model.id), dim: sql.raw(String(model.dimension)) };
}

/**
 * The planner's row estimate for the filtered vectors: it costs a plan, not a scan (counting 10 000
 * matches exactly took longer than the HNSW walk it was choosing). A misestimate costs speed, never
 * results: a selective-looking filter is answered exactly, and a short HNSW walk is repeated exactly.
 */
async function estimateMatching(trx: Transaction<DB>, q: NeighbourQuery): Promise<number> {
  const { id } = modelParts(q.model);
  const plan = await sql<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>`
    EXPLAIN (FORMAT JSON)
    SELECT 1 FROM product_embeddings e JOIN products p ON p.id = e.product_id
    WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')}`.execute(trx);
  const raw = plan.rows[0]!['QUERY PLAN'];
  const parsed = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: { 'Plan Rows': number } }>;
  return Math.round(parsed[0]!.Plan['Plan Rows']);
}

function order(q: NeighbourQuery) {
  return q.preferProductId ? sql`distance, (product_id = ${q.preferProductId}) DESC, product_id` : sql`distance, product_id`;
}

type Row = { product_id: string; distance: number };

function exactStatement(q: NeighbourQuery) {
  const { id } = modelParts(q.model);
  // Distance on the bare column: it does not match the HNSW expression, so no index walk is used.
  return sql<Row>`
    SELECT e.product_id, (e.embedding <=> ${q.vector}::halfvec)::float8 AS distance
    FROM product_embeddings e JOIN products p ON p.id = e.product_id
    WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')}
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
      WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')}
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
    return plan.rows.map((r) => r['QUERY PLAN'].replace(/'\[[^']*\]'/g, "'[…]'")).join('\n');
  });
}

export async function nearestNeighbours(db: Kysely<DB>, q: NeighbourQuery): Promise<NeighbourResult> {
  return db.transaction().execute(async (trx) => {
    const estimatedMatches = q.strategy ? -1 : await estimateMatching(trx, q);
    const strategy = q.strategy ?? chooseStrategy(estimatedMatches, q.k);
    if (strategy === 'exact') return { neighbours: await exact(trx, q), strategy, estimatedMatches, fellBack: false };
    const walked = await hnsw(trx, q);
    if (walked.length >= q.k) return { neighbours: walked, strategy, estimatedMatches, fellBack: false };
    // Short: fewer than k exist, or the walk ran out of budget. The exact answer settles which.
    return { neighbours: await exact(trx, q), strategy, estimatedMatches, fellBack: true };
  });
}
