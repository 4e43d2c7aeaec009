/**
 * The similarity query: vector distance and relational filters in one SQL statement, executed with
 * the strategy chosen for it (strategy.ts). searchNeighbours() is the service's hot path (one statement,
 * products included); nearestNeighbours() is the same query step by step (a transaction, EXPLAIN,
 * SET LOCAL), kept for benchmarks and tests that compare strategies.
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { productColumns, productFilterCondition, toProduct, type Product, type ProductFilter } from '../db/products.js';
import { MODEL_ID } from '../hub/ids.js';
import type { DB, ProductsTable } from '../db/types.js';
import type { SelectivityEstimator } from './estimate.js';
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
  /**
   * Where the filter is read: 'vectors' (the default) tests the copies carried on product_embeddings
   * (migration 0008), so neither path joins products until the k results are hydrated; 'products' is
   * the design before it (the filter on the joined products row), kept so benchmarks can measure both.
   */
  filterOn?: 'vectors' | 'products';
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
 * The vectors of the model that pass the filter, as FROM and WHERE: on the carried columns, one table;
 * on products (filterOn 'products'), joined to it row by row.
 */
function filtered(q: NeighbourQuery) {
  const { id } = modelParts(q.model);
  return q.filterOn === 'products'
    ? sql`FROM product_embeddings e JOIN products p ON p.id = e.product_id
          WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'p')}`
    : sql`FROM product_embeddings e
          WHERE e.model_id = ${id} AND ${productFilterCondition(q.filter, 'e')}`;
}

/**
 * The planner's row estimate for the filtered vectors: it costs a plan, not a scan (counting 10 000
 * matches exactly took longer than the HNSW walk it was choosing). A misestimate costs speed, never
 * results: a selective-looking filter is answered exactly, and a short HNSW walk is repeated exactly.
 */
async function estimateMatching(trx: Kysely<DB> | Transaction<DB>, q: NeighbourQuery): Promise<number> {
  const plan = await sql<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>`
    EXPLAIN (FORMAT JSON) SELECT 1 ${filtered(q)}`.execute(trx);
  const raw = plan.rows[0]!['QUERY PLAN'];
  const parsed = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: { 'Plan Rows': number } }>;
  return Math.round(parsed[0]!.Plan['Plan Rows']);
}

function order(q: NeighbourQuery) {
  return q.preferProductId ? sql`distance, (product_id = ${q.preferProductId}) DESC, product_id` : sql`distance, product_id`;
}

type Row = { product_id: string; distance: number };

function exactStatement(q: NeighbourQuery) {
  // Distance on the bare column: it does not match the HNSW expression, so no index walk is used.
  return sql<Row>`
    SELECT e.product_id, (e.embedding <=> ${q.vector}::halfvec)::float8 AS distance
    ${filtered(q)}
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
  const { dim } = modelParts(q.model);
  // relaxed_order may return neighbours slightly out of order: take k from the walk, then sort.
  return sql<Row>`
    WITH walk AS MATERIALIZED (
      SELECT e.product_id, (e.embedding::halfvec(${dim}) <=> ${q.vector}::halfvec(${dim}))::float8 AS distance
      ${filtered(q)}
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

type PlanRow = { 'QUERY PLAN': string };
/** EXPLAIN's lines, with the query vector's literal elided (768 numbers per line otherwise). */
const planText = (plan: { rows: PlanRow[] }) => plan.rows.map((r) => r['QUERY PLAN'].replace(/'\[[^']*\]'/g, "'[…]'")).join('\n');

/** The plan PostgreSQL picks for a strategy's statement (EXPLAIN), for operators and tests. */
export async function explainNeighbours(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy, analyze = false): Promise<string> {
  return db.transaction().execute(async (trx) => {
    if (strategy === 'hnsw') await applyHnswSettings(trx, q.k);
    const statement = strategy === 'hnsw' ? hnswStatement(q) : exactStatement(q);
    return planText(await sql<PlanRow>`EXPLAIN ${analyze ? sql`(ANALYZE, BUFFERS)` : sql``} ${statement}`.execute(trx));
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

/** A neighbour with its product, read in the same statement. */
export interface HydratedNeighbour {
  product: Product;
  distance: number;
}

export interface HydratedResult extends Omit<NeighbourResult, 'neighbours'> {
  neighbours: HydratedNeighbour[];
  /** False when the model the query ran for is no longer the active one (a switch elsewhere): run again. */
  modelActive: boolean;
  /** Statements this query took (1 on the hot path), for benchmarks and tests. */
  roundTrips: number;
}

type HydratedRow = Selectable<ProductsTable> & { distance: number | null; model_active: boolean | null };

/**
 * The whole query as one statement, so it costs one round trip and needs no transaction (PgBouncer in
 * transaction mode is fine: the statement is its own transaction):
 * - the HNSW settings are set inside it: an uncommitted set_config(…, true) in an InitPlan that gates the
 *   walk, so it runs before the index scan starts, and lasts only as long as the statement's transaction;
 * - a guard row says whether the model is still the active one, so a cached active model is checked on
 *   every query at the cost of one primary-key lookup (a switch by any replica is seen at once);
 * - the products are joined to the neighbours in the same statement.
 */
function hydratedStatement(q: NeighbourQuery, strategy: Strategy) {
  const { id, dim } = modelParts(q.model);
  const { efSearch, maxScanTuples } = hnswSettings(q.k);
  const settings = sql`(SELECT set_config('hnsw.ef_search', ${String(efSearch)}, true) IS NOT NULL
      AND set_config('hnsw.iterative_scan', 'relaxed_order', true) IS NOT NULL
      AND set_config('hnsw.max_scan_tuples', ${String(maxScanTuples)}, true) IS NOT NULL)`;
  const found =
    strategy === 'hnsw'
      ? // ORDER BY the output column (the index's expression; <=> is already float8): the query vector is
        // sent and parsed once, not once for the distance and again for the order.
        sql`SELECT e.product_id, e.embedding::halfvec(${dim}) <=> ${q.vector}::halfvec(${dim}) AS distance
          ${filtered(q)} AND ${settings}
          ORDER BY distance
          LIMIT ${q.k}`
      : sql`SELECT e.product_id, (e.embedding <=> ${q.vector}::halfvec)::float8 AS distance
          ${filtered(q)}
          ORDER BY ${order(q)}
          LIMIT ${q.k}`;
  const hydratedOrder = q.preferProductId ? sql`n.distance, (p.id = ${q.preferProductId}) DESC, p.id` : sql`n.distance, p.id`;
  return sql<HydratedRow>`
    WITH n AS MATERIALIZED (${found}),
    guard AS (SELECT coalesce((SELECT is_active FROM embedding_models WHERE id = ${id}), false) AS model_active)
    SELECT ${productColumns('p')}, n.distance, guard.model_active
    FROM guard LEFT JOIN (n JOIN products p ON p.id = n.product_id) ON true
    ORDER BY ${hydratedOrder}`;
}

/** The plan of the hot path's one statement (EXPLAIN), for operators and tests: which index serves it. */
export async function explainSearch(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy): Promise<string> {
  return planText(await sql<PlanRow>`EXPLAIN ${hydratedStatement(q, strategy)}`.execute(db));
}

async function runHydrated(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy) {
  const rows = (await hydratedStatement(q, strategy).execute(db)).rows;
  const modelActive = rows[0]?.model_active === true;
  const neighbours = rows.filter((r) => r.id != null).map((r) => ({ product: toProduct(r), distance: Number(r.distance) }));
  return { neighbours, modelActive };
}

/**
 * The hot path: strategy from the cached statistics (estimate.ts), then one statement. Two more only in
 * rare cases: no statistics yet (EXPLAIN), or a walk that came back short (answered exactly).
 */
export async function searchNeighbours(db: Kysely<DB>, q: NeighbourQuery, estimator: SelectivityEstimator | null): Promise<HydratedResult> {
  let roundTrips = 0;
  let estimatedMatches = -1;
  if (!q.strategy) {
    const cached = estimator ? await estimator.estimate(q.model.id, q.filter) : null;
    if (cached !== null) estimatedMatches = cached;
    else {
      estimatedMatches = await estimateMatching(db, q);
      roundTrips++;
    }
  }
  const strategy = q.strategy ?? chooseStrategy(estimatedMatches, q.k);
  const first = await runHydrated(db, q, strategy);
  roundTrips++;
  if (strategy === 'exact' || first.neighbours.length >= q.k || !first.modelActive) {
    return { ...first, strategy, estimatedMatches, fellBack: false, roundTrips };
  }
  // Short: fewer than k exist, or the walk ran out of budget. The exact answer settles which.
  const exactly = await runHydrated(db, q, 'exact');
  return { ...exactly, strategy, estimatedMatches, fellBack: true, roundTrips: roundTrips + 1 };
}
