/**
 * How many vectors of a model pass a filter, from the planner's own statistics (pg_stats, pg_class)
 * read once and refreshed in the background, instead of an EXPLAIN per query: the estimate then costs
 * no round trip. The arithmetic is the planner's for these shapes (MCV frequencies for equality, the
 * histogram for price ranges, independence between columns), so it agrees with EXPLAIN on the filters
 * ProductFilter can express (test/integration/search-estimate.test.ts measures both). Without
 * statistics (a table never analysed), or for an attributes filter, it says so, and the caller asks EXPLAIN.
 */
import { sql, type Kysely } from 'kysely';
import type { ProductFilter } from '../db/products.js';
import type { DB } from '../db/types.js';

interface ColumnStats {
  nullFrac: number;
  /** Distinct values (the planner's n_distinct, negative meaning a fraction of the rows, resolved). */
  nDistinct: number;
  mcv: Map<string, number>;
  mcvTotal: number;
  /** Histogram bounds of the values not in the MCV list (numeric columns only). */
  histogram: number[] | null;
}

interface Snapshot {
  products: number;
  /** Vectors per model id. */
  vectors: Map<string, number>;
  columns: Map<string, ColumnStats>;
  readAt: number;
}

type StatsRow = {
  tablename: string;
  attname: string;
  null_frac: number;
  n_distinct: number;
  mcv: string[] | null;
  freqs: number[] | null;
  histogram: string[] | null;
};

const REFRESH_MS = 60_000;

export class SelectivityEstimator {
  private snapshot: Snapshot | null = null;
  private loading: Promise<Snapshot | null> | null = null;

  constructor(
    private readonly db: Kysely<DB>,
    private readonly refreshMs = REFRESH_MS,
  ) {}

  /** Reads the statistics now (tests, after an ANALYZE). */
  async refresh(): Promise<void> {
    this.snapshot = await this.read();
  }

  /**
   * The estimate, or null when there are no statistics yet. A stale snapshot is used while a fresh one
   * is read in the background, so only the first query of a process waits for the read.
   */
  async estimate(modelId: string, filter: ProductFilter | null): Promise<number | null> {
    const now = Date.now();
    if (!this.snapshot) {
      this.loading ??= this.read().finally(() => (this.loading = null));
      this.snapshot = await this.loading;
    } else if (now - this.snapshot.readAt > this.refreshMs && !this.loading) {
      this.loading = this.read()
        .then((s) => (this.snapshot = s))
        .catch(() => this.snapshot) // keep the old numbers; the next query tries again
        .finally(() => (this.loading = null));
    }
    const s = this.snapshot;
    if (!s) return null;
    // Attribute filters (JSON containment on products.attributes, read through the product) have no
    // column statistics this arithmetic could use: the planner estimates them from its sample of the
    // documents (matchingsel), so EXPLAIN answers, at one round trip.
    if (filter?.attributes?.length) return null;
    const vectors = s.vectors.get(modelId);
    if (vectors === undefined) return null;
    return Math.round(vectors * filterSelectivity(s, filter));
  }

  /**
   * Vectors per product of a model (photos × (1 + regions), on average) from the same statistics; null
   * before they are read. Sizes the first walk of a query that must return k distinct products.
   */
  vectorsPerProduct(modelId: string): number | null {
    const s = this.snapshot;
    const vectors = s?.vectors.get(modelId);
    if (!s || vectors === undefined || !(s.products > 0)) return null;
    return Math.max(1, vectors / s.products);
  }

  private async read(): Promise<Snapshot | null> {
    const rel = await sql<{ relname: string; reltuples: number }>`
      SELECT relname, reltuples::float8 AS reltuples FROM pg_class
      WHERE oid IN (to_regclass('products'), to_regclass('product_embeddings'))`.execute(this.db);
    const tuples = new Map(rel.rows.map((r) => [r.relname, Number(r.reltuples)]));
    const products = tuples.get('products') ?? -1;
    const embeddings = tuples.get('product_embeddings') ?? -1;
    // reltuples is -1 before the first ANALYZE (PostgreSQL 14+); 0 can also mean "never analysed".
    if (!(products > 0) || !(embeddings > 0)) return null;
    const stats = await sql<StatsRow>`
      SELECT tablename::text AS tablename, attname::text AS attname, null_frac::float8 AS null_frac,
             n_distinct::float8 AS n_distinct, most_common_vals::text::text[] AS mcv,
             most_common_freqs::float8[] AS freqs, histogram_bounds::text::text[] AS histogram
      FROM pg_stats
      WHERE schemaname = current_schema()
        AND ((tablename = 'products' AND attname IN ('category', 'brand', 'price', 'in_stock'))
          OR (tablename = 'product_embeddings' AND attname = 'model_id'))`.execute(this.db);
    const columns = new Map<string, ColumnStats>();
    let modelStats: ColumnStats | null = null;
    for (const r of stats.rows) {
      const rows = r.tablename === 'products' ? products : embeddings;
      const mcv = new Map((r.mcv ?? []).map((v, i) => [v, Number(r.freqs?.[i] ?? 0)]));
      const col: ColumnStats = {
        nullFrac: Number(r.null_frac),
        nDistinct: r.n_distinct < 0 ? -r.n_distinct * rows : Number(r.n_distinct),
        mcv,
        mcvTotal: [...mcv.values()].reduce((a, b) => a + b, 0),
        histogram: r.histogram && r.attname === 'price' ? r.histogram.map(Number).filter(Number.isFinite) : null,
      };
      if (r.tablename === 'products') columns.set(r.attname, col);
      else modelStats = col;
    }
    if (!modelStats) return null;
    const vectors = new Map<string, number>();
    for (const [id, freq] of modelStats.mcv) vectors.set(id, freq * embeddings);
    // A model not in the MCV list (one of many) gets the planner's share for a non-MCV value.
    return { products, vectors: new ModelVectors(vectors, otherShare(modelStats) * embeddings), columns, readAt: Date.now() };
  }
}

/** The vectors-per-model map, answering the non-MCV share for models the statistics did not list. */
class ModelVectors extends Map<string, number> {
  constructor(
    known: Map<string, number>,
    private readonly other: number,
  ) {
    super(known);
  }
  override get(id: string): number | undefined {
    return super.get(id) ?? this.other;
  }
}

function otherShare(c: ColumnStats): number {
  const rest = Math.max(0, 1 - c.nullFrac - c.mcvTotal);
  return rest / Math.max(1, c.nDistinct - c.mcv.size);
}

function eqSelectivity(c: ColumnStats | undefined, value: string): number {
  if (!c) return 0.005; // the planner's DEFAULT_EQ_SEL
  return c.mcv.get(value) ?? otherShare(c);
}

/** Share of rows with price >= lo and <= hi (either open), histogram plus MCVs, as the planner reads them. */
function rangeSelectivity(c: ColumnStats | undefined, lo: number | null, hi: number | null): number {
  if (!c) return lo !== null && hi !== null ? 0.005 : 1 / 3; // DEFAULT_RANGE_INEQ_SEL, DEFAULT_INEQ_SEL
  const inRange = (v: number) => (lo === null || v >= lo) && (hi === null || v <= hi);
  let mcvPart = 0;
  for (const [v, f] of c.mcv) if (inRange(Number(v))) mcvPart += f;
  const restShare = Math.max(0, 1 - c.nullFrac - c.mcvTotal);
  const h = c.histogram;
  if (!h || h.length < 2) return mcvPart + restShare * (c.mcv.size ? 0 : 1 / 3);
  const below = (x: number): number => {
    if (x <= h[0]!) return 0;
    if (x >= h[h.length - 1]!) return 1;
    let i = 0;
    while (h[i + 1]! < x) i++;
    const span = h[i + 1]! - h[i]!;
    return (i + (span > 0 ? (x - h[i]!) / span : 0)) / (h.length - 1);
  };
  const share = (hi === null ? 1 : below(hi)) - (lo === null ? 0 : below(lo));
  return mcvPart + restShare * Math.max(0, share);
}

function filterSelectivity(s: Snapshot, f: ProductFilter | null): number {
  if (!f) return 1;
  let sel = 1;
  if (f.category != null) sel *= eqSelectivity(s.columns.get('category'), f.category);
  if (f.categories != null) {
    const c = s.columns.get('category');
    sel *= Math.min(
      1,
      [...new Set(f.categories)].reduce((a, v) => a + eqSelectivity(c, v), 0),
    );
  }
  if (f.brand != null) sel *= eqSelectivity(s.columns.get('brand'), f.brand);
  if (f.minPrice != null || f.maxPrice != null) sel *= rangeSelectivity(s.columns.get('price'), f.minPrice ?? null, f.maxPrice ?? null);
  if (f.inStock != null) sel *= eqSelectivity(s.columns.get('in_stock'), f.inStock ? 't' : 'f');
  // A variant is a photo's, not a product's column: the planner's default share for an equality.
  if (f.variant != null) sel *= eqSelectivity(undefined, f.variant);
  return sel;
}
