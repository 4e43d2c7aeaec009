/**
 * The similarity query: vector distance and relational filters in one SQL statement, executed with
 * the strategy chosen for it (strategy.ts). searchNeighbours() is the service's hot path (one statement,
 * products included); nearestNeighbours() is the same query step by step (a transaction, EXPLAIN,
 * SET LOCAL), kept for benchmarks and tests that compare strategies.
 *
 * A product has many vectors (one per photo and per region, migration 0010) and is ranked by its best
 * one; each product is returned once, and k means k products. Both paths read candidate vectors and
 * group them by product (grouped()): the exact path reads every vector passing the filters; the HNSW
 * walk reads the nearest `walkLimit` of them, and when those hold fewer than k products although the
 * walk did not run dry, it walks again four times as deep (a product with 12 near-identical photos takes
 * 12 vectors but one slot). A walk that runs dry short of k products is answered exactly, as before.
 */
import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import { toProductImage, type ImageRow, type ProductImage } from '../db/images.js';
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
  /** How many of each product's best photos to report (imageMatches); default 1. */
  imagesPerProduct?: number;
  /** Vectors per product of the model on average (the estimator's): sizes the first walk. Default 1. */
  vectorsPerProduct?: number;
  /**
   * Whether the hot path reads the best photo's row (ImageHit.image; default true). False when the client
   * asked for no matched photo: the best photo's id and region only, and no join of product_images.
   */
  matchedPhotos?: boolean;
}

/** One photo's (or region's) match: region 0 is the whole photo. imageId null: a vector of no stored photo. */
export interface ImageHit {
  imageId: string | null;
  region: number;
  distance: number;
  /** The photo (read in the same statement); null for a vector of no stored photo. */
  image: ProductImage | null;
}

export interface Neighbour {
  productId: string;
  /** The best photo's distance: the product's. */
  distance: number;
  /** The product's best photos, best first (at least the best one; imagesPerProduct of them). */
  images: ImageHit[];
}

export interface NeighbourResult {
  neighbours: Neighbour[];
  strategy: Strategy;
  /** The planner's estimate of how many vectors pass the filters (what the strategy was chosen on). */
  estimatedMatches: number;
  /** True when an HNSW walk came back short and the query was answered exactly instead. */
  fellBack: boolean;
  /** HNSW walks taken (each deeper than the last while the vectors read held fewer than k products); 0: exact. */
  walks: number;
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

/** A product may not hold more vectors per model than this: 100 photos, each whole and with 10 regions. */
const MAX_VECTORS_PER_PRODUCT = 100 * 11;

/** The first walk's depth: k products' worth of vectors. */
export function firstWalkLimit(q: NeighbourQuery): number {
  return Math.min(MAX_WALK, q.k * Math.max(1, Math.ceil(q.vectorsPerProduct ?? 1)));
}

/** Beyond this many vectors a walk is not worth taking: the exact path answers. */
const MAX_WALK = 40_000;

function nextWalkLimit(q: NeighbourQuery, limit: number): number | null {
  const next = limit * 4;
  // Every vector k products could have is read already, or the walk would be deeper than the exact scan.
  if (limit >= q.k * MAX_VECTORS_PER_PRODUCT || next > MAX_WALK) return null;
  return next;
}

/** The answer's order; `of` qualifies the columns (a grouped row joined to its photo has two product_id). */
function order(q: NeighbourQuery, of?: string) {
  const [distance, productId] = of ? [sql.ref(`${of}.distance`), sql.ref(`${of}.product_id`)] : [sql`distance`, sql`product_id`];
  return q.preferProductId ? sql`${distance}, (${productId} = ${q.preferProductId}) DESC, ${productId}` : sql`${distance}, ${productId}`;
}

type HitJson = {
  i: string | null;
  r: number;
  d: number;
  img: (Omit<ImageRow, 'id' | 'product_id'> & { product_id: number | string }) | null;
};
/** The best photo's columns beside the product's (img_*: null for a vector of no stored photo). */
type BestImageColumns = {
  image_id: string | null;
  region: number;
  img_position: number | null;
  img_label: string | null;
  img_variant: string | null;
  img_regions: ImageRow['regions'] | null;
  img_sha256: string | null;
  img_format: string | null;
  img_width: number | null;
  img_height: number | null;
  img_source_url: string | null;
};
type Row = BestImageColumns & { product_id: string; distance: number; more: HitJson[] | string | null; walked: string | number };
/** grouped()'s row: the best photo's id and region, not yet its columns. */
type GroupedRow = Omit<Row, keyof BestImageColumns> & Pick<BestImageColumns, 'image_id' | 'region'>;

/** A further matched photo's columns (no bytes), as JSON inside the statement: no second round trip. */
const imageJson = sql`CASE WHEN pi.id IS NULL THEN NULL ELSE json_build_object(
  'product_id', pi.product_id, 'position', pi.position, 'label', pi.label, 'variant', pi.variant, 'regions', pi.regions,
  'sha256', pi.sha256, 'format', pi.format, 'width', pi.width, 'height', pi.height, 'source_url', pi.source_url) END`;

/** The best photo's columns, from the grouped row `g` and its photo `pi` (LEFT JOINed on g.image_id; its product is g's). */
const bestImageColumns = sql`g.image_id::text AS image_id, g.region, pi.position AS img_position,
  pi.label AS img_label, pi.variant AS img_variant, pi.regions AS img_regions, pi.sha256 AS img_sha256,
  pi.format AS img_format, pi.width AS img_width, pi.height AS img_height, pi.source_url AS img_source_url`;

/**
 * Candidate vectors (product_id, image_id, region, distance) → one row per product, best first, k of
 * them: the product's distance, photo and region are its best vector's; more is its next best photos up
 * to `imagesPerProduct` (a photo counted once, by its best vector: the whole photo or one of its
 * regions); walked is how many candidates there were (a walk that returned its whole limit may go deeper).
 *
 * With one photo per product asked for (the default), a DISTINCT ON picks each product's best vector and
 * nothing is built as JSON, to keep one-photo catalogs close to the one-vector-per-product statement
 * this replaced (the window-and-JSON form was 5–12 % slower on them, and this one still costs
 * 0.4–0.75 ms more than that statement: bench/search/baseline.ts, BENCHMARKS.md). Several photos per
 * product need the window over each product's photos.
 */
function grouped(q: NeighbourQuery, candidates: RawBuilder<unknown>) {
  const n = Math.max(1, q.imagesPerProduct ?? 1);
  if (n === 1)
    // The window counts the candidates before DISTINCT ON keeps each product's first row.
    return sql<GroupedRow>`
      SELECT b.product_id, b.image_id, b.region, b.distance, NULL::json AS more, b.walked
      FROM (SELECT DISTINCT ON (product_id) product_id, image_id, region, distance, count(*) OVER () AS walked
            FROM (${candidates}) c ORDER BY product_id, distance, image_id, region) b
      ORDER BY ${order(q)}
      LIMIT ${q.k}`;
  return sql<GroupedRow>`
    WITH c AS MATERIALIZED (${candidates}),
    per_image AS (
      SELECT DISTINCT ON (product_id, image_id) product_id, image_id, region, distance
      FROM c ORDER BY product_id, image_id, distance, region
    ),
    ranked AS (
      SELECT product_id, image_id, region, distance,
             row_number() OVER (PARTITION BY product_id ORDER BY distance, image_id, region) AS r
      FROM per_image
    )
    SELECT b.product_id, b.image_id, b.region, b.distance,
           (SELECT json_agg(json_build_object('i', x.image_id::text, 'r', x.region, 'd', x.distance, 'img', ${imageJson}) ORDER BY x.r)
            FROM ranked x LEFT JOIN product_images pi ON pi.id = x.image_id
            WHERE x.product_id = b.product_id AND x.r BETWEEN 2 AND ${n}) AS more,
           (SELECT count(*) FROM c) AS walked
    FROM ranked b
    WHERE b.r = 1
    ORDER BY ${order(q)}
    LIMIT ${q.k}`;
}

/** grouped() with its best photos' columns: the statement nearestNeighbours() runs. */
function groupedWithImages(q: NeighbourQuery, candidates: RawBuilder<unknown>) {
  return sql<Row>`
    SELECT g.product_id, g.distance, g.more, g.walked, ${bestImageColumns}
    FROM (${grouped(q, candidates)}) g LEFT JOIN product_images pi ON pi.id = g.image_id
    ORDER BY ${order(q, 'g')}`;
}

/**
 * Every vector passing the filters, with its distance; with `nearest`, only the nearest that many (a top-N
 * sort, not a full one). The first k products of the nearest vectors are the exact top k whenever those
 * vectors hold k products: a product ranks by its best vector, which comes first in the same order.
 */
function exactCandidates(q: NeighbourQuery, nearest?: number) {
  // Distance on the bare column: it does not match the HNSW expression, so no index walk is used.
  return sql`SELECT e.product_id, e.image_id, e.region, (e.embedding <=> ${q.vector}::halfvec)::float8 AS distance
    ${filtered(q)} ${nearest === undefined ? sql`` : sql`ORDER BY ${order(q)} LIMIT ${nearest}`}`;
}

/**
 * How many of the nearest vectors the hot path's exact statement groups first: four times the products'
 * worth of vectors, so that a catalog's uneven photo counts rarely leave it short of k products (then
 * every vector is grouped, in a second statement). Null when the answer lists several photos per product
 * (imagesPerProduct): a product's further photos may lie beyond the nearest vectors.
 *
 * Why: grouping every vector that passes the filter (a sort by product, a window) cost 7.3 ms at the median
 * for 1 000 vectors (0.1 % of 250 000 products × 4 photos); grouping the nearest first, 3.3 ms (BENCHMARKS.md,
 * issue 22).
 */
function exactNearestLimit(q: NeighbourQuery): number | null {
  return (q.imagesPerProduct ?? 1) > 1 ? null : 4 * firstWalkLimit(q);
}

function exactStatement(q: NeighbourQuery) {
  return groupedWithImages(q, exactCandidates(q));
}

async function applyHnswSettings(trx: Transaction<DB>, k: number, walkLimit: number): Promise<void> {
  const { efSearch, maxScanTuples } = hnswSettings(k, walkLimit);
  await sql`SELECT set_config('hnsw.ef_search', ${String(efSearch)}, true),
                   set_config('hnsw.iterative_scan', 'relaxed_order', true),
                   set_config('hnsw.max_scan_tuples', ${String(maxScanTuples)}, true)`.execute(trx);
}

function walkCandidates(q: NeighbourQuery, walkLimit: number, settings: RawBuilder<unknown> | null) {
  const { dim } = modelParts(q.model);
  // ORDER BY the output column (the index's expression; <=> is already float8): the query vector is sent
  // and parsed once. relaxed_order may return neighbours slightly out of order: grouped() sorts.
  return sql`SELECT e.product_id, e.image_id, e.region, e.embedding::halfvec(${dim}) <=> ${q.vector}::halfvec(${dim}) AS distance
    ${filtered(q)} ${settings ? sql`AND ${settings}` : sql``}
    ORDER BY distance
    LIMIT ${walkLimit}`;
}

function hnswStatement(q: NeighbourQuery, walkLimit = firstWalkLimit(q)) {
  return groupedWithImages(q, walkCandidates(q, walkLimit, null));
}

/** A product's matched photos, best first: the best from its columns, the further ones from `more`. */
function imageHits(productId: string, distance: number, r: BestImageColumns & Pick<Row, 'more'>): ImageHit[] {
  const best: ImageHit = {
    imageId: r.image_id,
    region: Number(r.region),
    distance,
    image:
      // sha256 is NOT NULL: null means the LEFT JOIN found no photo (a vector of no stored photo)
      r.image_id && r.img_sha256 != null
        ? toProductImage({
            id: r.image_id,
            product_id: productId,
            position: r.img_position!,
            label: r.img_label,
            variant: r.img_variant,
            regions: r.img_regions!,
            sha256: r.img_sha256,
            format: r.img_format!,
            width: r.img_width!,
            height: r.img_height!,
            source_url: r.img_source_url,
          })
        : null,
  };
  if (r.more == null) return [best];
  const more = (typeof r.more === 'string' ? JSON.parse(r.more) : r.more) as HitJson[];
  return [
    best,
    ...more.map((h) => ({
      imageId: h.i,
      region: Number(h.r),
      distance: Number(h.d),
      image: h.img && h.i ? toProductImage({ ...h.img, id: h.i, product_id: String(h.img.product_id) }) : null,
    })),
  ];
}

const toNeighbours = (rows: Row[]): Neighbour[] =>
  rows.map((r) => ({
    productId: String(r.product_id),
    distance: Number(r.distance),
    images: imageHits(String(r.product_id), Number(r.distance), r),
  }));

/** A walk's answer: the products, and whether the walk returned its whole limit (it may go deeper). */
function walkOutcome(rows: Row[], walkLimit: number) {
  const walked = rows.length ? Number(rows[0]!.walked) : 0;
  return { full: walked >= walkLimit };
}

async function exact(trx: Transaction<DB>, q: NeighbourQuery): Promise<Neighbour[]> {
  return toNeighbours((await exactStatement(q).execute(trx)).rows);
}

/** Walks deeper while the vectors read hold fewer than k products; null when only the exact path can say. */
async function hnsw(trx: Transaction<DB>, q: NeighbourQuery): Promise<{ neighbours: Neighbour[]; walks: number }> {
  let walkLimit: number | null = firstWalkLimit(q);
  for (let walks = 1; ; walks++) {
    await applyHnswSettings(trx, q.k, walkLimit);
    const rows = (await hnswStatement(q, walkLimit).execute(trx)).rows;
    if (rows.length >= q.k || !walkOutcome(rows, walkLimit).full) return { neighbours: toNeighbours(rows), walks };
    walkLimit = nextWalkLimit(q, walkLimit);
    if (walkLimit === null) return { neighbours: toNeighbours(rows), walks };
  }
}

type PlanRow = { 'QUERY PLAN': string };
/** EXPLAIN's lines, with the query vector's literal elided (768 numbers per line otherwise). */
const planText = (plan: { rows: PlanRow[] }) => plan.rows.map((r) => r['QUERY PLAN'].replace(/'\[[^']*\]'/g, "'[…]'")).join('\n');

/** The plan PostgreSQL picks for a strategy's statement (EXPLAIN), for operators and tests. */
export async function explainNeighbours(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy, analyze = false): Promise<string> {
  return db.transaction().execute(async (trx) => {
    if (strategy === 'hnsw') await applyHnswSettings(trx, q.k, firstWalkLimit(q));
    const statement = strategy === 'hnsw' ? hnswStatement(q) : exactStatement(q);
    return planText(await sql<PlanRow>`EXPLAIN ${analyze ? sql`(ANALYZE, BUFFERS)` : sql``} ${statement}`.execute(trx));
  });
}

export async function nearestNeighbours(db: Kysely<DB>, q: NeighbourQuery): Promise<NeighbourResult> {
  return db.transaction().execute(async (trx) => {
    const estimatedMatches = q.strategy ? -1 : await estimateMatching(trx, q);
    const strategy = q.strategy ?? chooseStrategy(estimatedMatches, q.k);
    if (strategy === 'exact') return { neighbours: await exact(trx, q), strategy, estimatedMatches, fellBack: false, walks: 0 };
    const walked = await hnsw(trx, q);
    if (walked.neighbours.length >= q.k) return { ...walked, strategy, estimatedMatches, fellBack: false };
    // Short: fewer than k products exist, or the walk ran out of budget. The exact answer settles which.
    return { neighbours: await exact(trx, q), strategy, estimatedMatches, fellBack: true, walks: walked.walks };
  });
}

/** A neighbour with its product, read in the same statement. */
export interface HydratedNeighbour {
  product: Product;
  distance: number;
  images: ImageHit[];
}

export interface HydratedResult extends Omit<NeighbourResult, 'neighbours'> {
  neighbours: HydratedNeighbour[];
  /** False when the model the query ran for is no longer the active one (a switch elsewhere): run again. */
  modelActive: boolean;
  /** Statements this query took (1 on the hot path), for benchmarks and tests. */
  roundTrips: number;
}

type HydratedRow = Selectable<ProductsTable> &
  BestImageColumns & {
    distance: number | null;
    model_active: boolean | null;
    more: Row['more'];
    walked: string | number | null;
  };

/**
 * The whole query as one statement, so it costs one round trip and needs no transaction (PgBouncer in
 * transaction mode is fine: the statement is its own transaction):
 * - the HNSW settings are set inside it: an uncommitted set_config(…, true) in an InitPlan that gates the
 *   walk, so it runs before the index scan starts, and lasts only as long as the statement's transaction;
 * - a guard row says whether the model is still the active one, so a cached active model is checked on
 *   every query at the cost of one primary-key lookup (a switch by any replica is seen at once);
 * - the vectors are grouped by product (grouped()), or, `lean`, read as they are (leanFirst()), and the
 *   products joined in the same statement.
 */
function hydratedStatement(q: NeighbourQuery, strategy: Strategy, limit?: number, lean = false) {
  const { id } = modelParts(q.model);
  // The walk's depth (its first by default); for the exact path, the nearest vectors to group (all by default).
  const walkLimit = limit ?? firstWalkLimit(q);
  const { efSearch, maxScanTuples } = hnswSettings(q.k, walkLimit);
  const settings = sql`(SELECT set_config('hnsw.ef_search', ${String(efSearch)}, true) IS NOT NULL
      AND set_config('hnsw.iterative_scan', 'relaxed_order', true) IS NOT NULL
      AND set_config('hnsw.max_scan_tuples', ${String(maxScanTuples)}, true) IS NOT NULL)`;
  const candidates = strategy === 'hnsw' ? walkCandidates(q, walkLimit, settings) : exactCandidates(q, limit);
  // lean: the nearest vectors as they are, one row each (their products checked distinct by runHydrated).
  const found = lean
    ? sql`
      SELECT c.product_id, c.image_id, c.region, c.distance, NULL::json AS more, NULL::bigint AS walked
      FROM (${candidates}) c`
    : grouped(q, candidates);
  // Without the matched photo asked for, its id and region only (ImageHit.image null): no photo joined.
  const withPhoto = q.matchedPhotos !== false;
  return sql<HydratedRow>`
    WITH n AS MATERIALIZED (${found}),
    guard AS (SELECT coalesce((SELECT is_active FROM embedding_models WHERE id = ${id}), false) AS model_active)
    SELECT ${productColumns('p')}, g.distance, g.more, g.walked, guard.model_active,
      ${withPhoto ? bestImageColumns : sql`g.image_id::text AS image_id, g.region`}
    FROM guard LEFT JOIN (n g JOIN products p ON p.id = g.product_id
      ${withPhoto ? sql`LEFT JOIN product_images pi ON pi.id = g.image_id` : sql``}) ON true
    ORDER BY ${order(q, 'g')}`;
}

/** The plan of the hot path's one statement (EXPLAIN), for operators and tests: which index serves it. */
export async function explainSearch(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy): Promise<string> {
  // The first statement searchNeighbours() sends.
  const lean = leanFirst(q);
  const limit = lean ? q.k : strategy === 'exact' ? (exactNearestLimit(q) ?? undefined) : undefined;
  return planText(await sql<PlanRow>`EXPLAIN ${hydratedStatement(q, strategy, limit, lean)}`.execute(db));
}

/**
 * Whether the hot path first asks for the nearest k vectors as they are, ungrouped (the statement of the
 * one-vector-per-product design before migration 0010): on a catalog of about one vector per product
 * (the statistics' estimate; up to one product in ten with a second), those k vectors are nearly always
 * k distinct products, and then they are exactly the grouped answer: each product's vector among them is
 * its best (a better one would be among them too, a duplicate), and any other product's best is no nearer
 * than the k-th. When two share a product, the grouped statement runs, walking deeper: one more round trip.
 *
 * Why: the grouping (a sort by product, DISTINCT ON, a window count) cost one-photo catalogs 0.13–0.25 ms
 * a query of the 0.4–0.75 ms they lost to multiple photos (bench/search/baseline.ts, BENCHMARKS.md).
 */
export function leanFirst(q: NeighbourQuery): boolean {
  return (q.imagesPerProduct ?? 1) === 1 && (q.vectorsPerProduct ?? 1) <= 1.1;
}

async function runHydrated(db: Kysely<DB>, q: NeighbourQuery, strategy: Strategy, limit?: number, lean = false) {
  const rows = (await hydratedStatement(q, strategy, limit, lean).execute(db)).rows;
  const modelActive = rows[0]?.model_active === true;
  const found = rows.filter((r) => r.id != null);
  const neighbours = found.map((r) => ({
    product: toProduct(r),
    distance: Number(r.distance),
    images: imageHits(String(r.id), Number(r.distance), r),
  }));
  // How many vectors were read: the lean statement's rows are its vectors; a grouped row counts them.
  const walked = lean ? found.length : found.length > 0 ? Number(found[0]!.walked) : 0;
  const full = limit !== undefined && walked >= limit;
  // A lean answer whose vectors share a product is no answer: the grouped statement must run.
  const distinct = !lean || new Set(found.map((r) => r.id)).size === found.length;
  return { neighbours, modelActive, full, distinct };
}

/**
 * The hot path: strategy from the cached statistics (estimate.ts), then one statement. More only in rare
 * cases: no statistics yet (EXPLAIN), a walk whose vectors held fewer than k products (a deeper walk), or
 * a walk that ran dry short of k products (answered exactly).
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
  let lean = leanFirst(q);
  if (strategy === 'exact') {
    if (lean) {
      const { full, distinct, ...exactly } = await runHydrated(db, q, 'exact', q.k, true);
      roundTrips++;
      // k distinct products, or fewer vectors than k pass the filter (all of them read, distinct).
      if (!exactly.modelActive || (distinct && (exactly.neighbours.length >= q.k || !full)))
        return { ...exactly, strategy, estimatedMatches, fellBack: false, walks: 0, roundTrips };
    }
    const nearest = exactNearestLimit(q);
    if (nearest !== null) {
      const { full, distinct: _, ...exactly } = await runHydrated(db, q, 'exact', nearest);
      roundTrips++;
      // k products among the nearest vectors, or every matching vector read: that is the exact answer.
      if (exactly.neighbours.length >= q.k || !full || !exactly.modelActive)
        return { ...exactly, strategy, estimatedMatches, fellBack: false, walks: 0, roundTrips };
    }
    const { full: _, distinct: __, ...exactly } = await runHydrated(db, q, 'exact');
    return { ...exactly, strategy, estimatedMatches, fellBack: false, walks: 0, roundTrips: roundTrips + 1 };
  }
  let walkLimit: number | null = lean ? q.k : firstWalkLimit(q);
  for (let walks = 1; walkLimit !== null; walks++) {
    const { full, distinct, ...walked } = await runHydrated(db, q, 'hnsw', walkLimit, lean);
    roundTrips++;
    if (!walked.modelActive || (distinct && walked.neighbours.length >= q.k))
      return { ...walked, strategy, estimatedMatches, fellBack: false, walks, roundTrips };
    // Short (or, lean, holding a product twice) with the walk's whole limit read: the vectors read held
    // fewer than k products; walk deeper, grouped. Short before its limit: fewer than k products exist,
    // or the walk ran out of budget.
    walkLimit = full ? nextWalkLimit(q, walkLimit) : null;
    lean = false;
    if (walkLimit === null) {
      const { full: _, distinct: __, ...exactly } = await runHydrated(db, q, 'exact');
      return { ...exactly, strategy, estimatedMatches, fellBack: true, walks, roundTrips: roundTrips + 1 };
    }
  }
  throw new Error('unreachable');
}

/**
 * Each product's best cosine to each example vector (its best photo or region passing the filter, as
 * search ranks it): one statement over the given products' vectors only (recommendations' BEST_SCORE,
 * compose.ts). Returns product id → one cosine per example, in the examples' order.
 */
export async function bestCosines(
  db: Kysely<DB>,
  model: { id: string; dimension: number },
  productIds: readonly string[],
  examples: readonly string[],
  filter: ProductFilter | null = null,
): Promise<Map<string, number[]>> {
  const { id } = modelParts(model);
  const out = new Map<string, number[]>();
  if (!productIds.length || !examples.length) return out;
  const rows = await sql<{ product_id: string; i: string | number; cosine: number }>`
    SELECT e.product_id::text AS product_id, x.i, max(1 - (e.embedding <=> x.v::halfvec)::float8) AS cosine
    FROM product_embeddings e
    CROSS JOIN unnest(${examples}::text[]) WITH ORDINALITY AS x(v, i)
    WHERE e.model_id = ${id} AND e.product_id = ANY(${productIds}::bigint[]) AND ${productFilterCondition(filter, 'e')}
    GROUP BY e.product_id, x.i`.execute(db);
  for (const r of rows.rows) {
    const list = out.get(r.product_id) ?? new Array<number>(examples.length).fill(-Infinity);
    list[Number(r.i) - 1] = Number(r.cosine);
    out.set(r.product_id, list);
  }
  return out;
}
