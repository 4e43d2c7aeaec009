/**
 * Filtered similarity search: our per-query strategy against its peers, measured in the same run.
 *
 *   npx tsx bench/search/search.ts [--rows 100000] [--backend postgres|pglite] [--queries 100] [--storage-compare]
 *                                  [--keep-state DIR [--shared-buffers 6GB]] [--only all|queries|storage] [--explain]
 *                                  [--category-indexes on|off]
 *
 * --keep-state DIR keeps the throwaway cluster in DIR after the run (server stopped, data kept); a later
 * run with the same DIR and --rows reuses the loaded rows and the HNSW index instead of rebuilding them
 * (1M rows: ~15 minutes saved). --only queries skips the in-memory peer and the storage comparison.
 * --category-indexes off drops the per-category HNSW indexes (src/models/category-indexes.ts) a run
 * builds by default, to measure the design without them on the same data.
 *
 * "ours" is the service's hot path (searchNeighbours: cached statistics, one statement, products
 * included); its statements per query are reported. "join-filter" is the same hot path with the filter
 * read from products through a join: the design before migration 0008 carried the filter columns on the
 * vector rows. "attr-filter" is the hot path with the same selectivity as a ProductFilter.attributes
 * filter (JSON containment on the product's row, migration 0012; not carried on the vector rows). Data:
 * embedding-like vectors (clustered, low intrinsic dimension, L2-normalised, 768-d);
 * categories holding 10%, 1%, 0.1% and 0.01% of the rows. Peers: the exact scan of a typical tutorial
 * (ORDER BY distance with the filter, no ANN index), pgvector HNSW with the filter applied after the
 * scan (iterative scans off, defaults), and hnswlib-node in memory (unfiltered only: it has no
 * relational filters).
 */
import { sql } from 'kysely';
import { vectorLiteral } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import {
  dropCategoryIndexes,
  listCategoryIndexes,
  syncCategoryIndexes,
  type CategoryIndexSync,
} from '../../src/models/category-indexes.js';
import { dropModelIndex, ensureModelIndex, modelIndexName, modelIndexState } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { explainNeighbours, nearestNeighbours, searchNeighbours, type NeighbourQuery } from '../../src/search/query.js';
import { arg, median, ms, percentile, printMachine, table } from '../lib/report.js';
import { categoryOf, dim, model, selectivities, space } from './clustered-catalog.js';
import { benchDatabase, prewarm } from './database.js';

const rows = Number(arg('rows', '100000'));
const backend = arg('backend', 'postgres') as 'postgres' | 'pglite';
const nQueries = Number(arg('queries', '100'));
const storageCompare = process.argv.includes('--storage-compare');
const explain = process.argv.includes('--explain');
const only = arg('only', 'all'); // all | queries | storage
const k = 10;

const keepState = arg('keep-state', '') || null;
const sharedBuffers = arg('shared-buffers', '') || null;
// Quote figures only from runs that start on a quiet machine (BENCHMARKS.md): read before the cluster starts.
printMachine();
const { database, stop } = await benchDatabase(backend, { keepState, sharedBuffers });
const db = database.db;
console.error(`[bench] ${backend}, ${rows} rows of ${dim}-d vectors${keepState ? ` (kept in ${keepState})` : ''}`);

// ---- load ---------------------------------------------------------------------------------------
// What was loaded is recorded, so a kept database is reused only for the same dataset.
const DATASET = `clustered-768 seed 11, categories c10 c1 c0.1 c0.01, v2, ${rows} rows`;
await sql`CREATE TABLE IF NOT EXISTS bench_dataset (description text PRIMARY KEY, load_seconds float8 NOT NULL)`.execute(db);
const loaded = await sql<{ load_seconds: number }>`SELECT load_seconds FROM bench_dataset WHERE description = ${DATASET}`.execute(db);
let loadSeconds: number;
let t0 = process.hrtime.bigint();
if (loaded.rows.length) {
  loadSeconds = Number(loaded.rows[0]!.load_seconds);
  console.error(`[bench] reusing the loaded dataset (${DATASET})`);
} else {
  // A kept database from an interrupted load (or another --rows): start it again from empty.
  await dropModelIndex(db, model.id);
  await sql`TRUNCATE products, product_embeddings, embedding_models, bench_dataset CASCADE`.execute(db);
  await registerModel(db, { ...model, source: 'bench', variant: null });
  await activateModel(db, model.id);
  // Bulk load: two statements per batch of unnest arrays. The vectors go as text rounded to 5 digits
  // (halfvec keeps ~3), which halves what both sides format and parse: at 1M rows on a busy machine
  // the text was most of the load time. The filter copies come from migration 0008's trigger.
  const literal = (v: Float32Array) => `[${Array.from(v, (x) => x.toPrecision(5)).join(',')}]`;
  const batch = 2000;
  for (let start = 0; start < rows; start += batch) {
    const ids = Array.from({ length: Math.min(batch, rows - start) }, (_, j) => start + j);
    const inserted = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category, price, in_stock, attributes)
      SELECT 'b-' || i, 'bench product ' || i, c, (i % 500)::numeric, (i % 3 <> 0), jsonb_build_object('tier', c)
      FROM unnest(${ids}::int[], ${ids.map(categoryOf)}::text[]) WITH ORDINALITY AS t(i, c, n) ORDER BY n RETURNING id`.execute(db);
    await sql`
      INSERT INTO product_embeddings (product_id, model_id, embedding, image_sha256)
      SELECT v.id, ${model.id}, v.e::halfvec, ${'b'.repeat(64)}
      FROM unnest(${inserted.rows.map((r) => r.id)}::bigint[], ${ids.map((i) => literal(space.vector(i)))}::text[]) AS v(id, e)`.execute(
      db,
    );
    if (start % 50_000 === 0) console.error(`[bench] loaded ${start + ids.length} (${Math.round(ms(t0) / 1000)} s)`);
  }
  loadSeconds = ms(t0) / 1000;
  await sql`INSERT INTO bench_dataset (description, load_seconds) VALUES (${DATASET}, ${loadSeconds})`.execute(db);
}

// The "attr" columns filter on products.attributes (ProductFilter.attributes, read from the product, not
// carried): each product's category is also its attributes' "tier". A dataset kept from before gets it here.
if (!(await sql<{ n: number }>`SELECT 1 AS n FROM products WHERE attributes ? 'tier' LIMIT 1`.execute(db)).rows.length) {
  console.error(`[bench] adding attributes.tier to the kept dataset`);
  await sql`UPDATE products SET attributes = attributes || jsonb_build_object('tier', category)`.execute(db);
  await sql`ANALYZE products`.execute(db);
}

// The build time of a kept index is kept too (this run did not build it).
await sql`CREATE TABLE IF NOT EXISTS bench_index_build (index_name text PRIMARY KEY, seconds float8 NOT NULL)`.execute(db);
const built = await sql<{ seconds: number }>`SELECT seconds FROM bench_index_build WHERE index_name = ${modelIndexName(model.id)}`.execute(
  db,
);
let buildSeconds: number;
if (built.rows.length && (await modelIndexState(db, model.id)) === 'valid') {
  buildSeconds = Number(built.rows[0]!.seconds);
  console.error(`[bench] reusing the HNSW index (built in ${buildSeconds.toFixed(0)} s)`);
} else {
  console.error(`[bench] building the HNSW index`);
  t0 = process.hrtime.bigint();
  await db.transaction().execute(async (trx) => {
    // The HNSW graph of 1M 768-d halfvecs needs ~2 GB; a build that spills out of memory is far slower.
    // One worker: parallel HNSW builds before pgvector 0.8.2 could overflow (the throwaway cluster sets it too).
    if (backend === 'postgres') {
      await sql`SET LOCAL maintenance_work_mem = '4GB'`.execute(trx);
      await sql`SET LOCAL max_parallel_maintenance_workers = 0`.execute(trx);
    }
    await ensureModelIndex(trx, model);
  });
  buildSeconds = ms(t0) / 1000;
  await sql`INSERT INTO bench_index_build (index_name, seconds) VALUES (${modelIndexName(model.id)}, ${buildSeconds})
            ON CONFLICT (index_name) DO UPDATE SET seconds = excluded.seconds`.execute(db);
  await sql`VACUUM ANALYZE`.execute(db);
}
// Per-category indexes as a reindex builds them (default policy), unless --category-indexes off (the
// design before them: every filtered walk goes through the model's whole index).
const categoryIndexes = arg('category-indexes', 'on') !== 'off';
t0 = process.hrtime.bigint();
let categorySync: CategoryIndexSync = { built: [], dropped: [], kept: [] };
if (categoryIndexes) categorySync = await syncCategoryIndexes(db, model, database.kind);
else await dropCategoryIndexes(db, model.id);
const categorySeconds = ms(t0) / 1000;
console.error(`[bench] category indexes: ${JSON.stringify(categorySync)} in ${categorySeconds.toFixed(1)} s`);
await sql`ANALYZE`.execute(db);
const size = async (rel: string) =>
  Number((await sql<{ n: string }>`SELECT pg_total_relation_size(${rel}::regclass)::text AS n`.execute(db)).rows[0]!.n);
const heapBytes = Number((await sql<{ n: string }>`SELECT pg_table_size('product_embeddings')::text AS n`.execute(db)).rows[0]!.n);
const indexBytes = await size(modelIndexName(model.id));
const categoryNames = (await listCategoryIndexes(db, model.id)).map((i) => i.name);
let categoryBytes = 0;
for (const name of categoryNames) categoryBytes += await size(name);

table(`Load and index (${backend}, ${rows} rows, ${dim}-d halfvec)`, [
  {
    'load (rows/s)': Math.round(rows / loadSeconds),
    'HNSW build (s)': buildSeconds,
    'vectors table (MiB)': heapBytes / 2 ** 20,
    'HNSW index (MiB)': indexBytes / 2 ** 20,
    'category indexes': categorySync.built.length + categorySync.kept.length,
    'category indexes built (s)': categorySync.built.length ? categorySeconds : '–',
    'category indexes (MiB)': categoryBytes / 2 ** 20,
  },
]);

// Warm buffers first (database.ts prewarm says why).
if (backend === 'postgres') await prewarm(db, ['product_embeddings', 'products', modelIndexName(model.id), ...categoryNames]);

// ---- queries -------------------------------------------------------------------------------------
const queries = Array.from({ length: nQueries }, (_, j) => vectorLiteral(space.query(j)));

/** pgvector HNSW as most integrations use it: defaults, filter after the index scan. */
async function postFilteredHnsw(q: NeighbourQuery): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('hnsw.iterative_scan', 'off', true), set_config('hnsw.ef_search', '40', true)`.execute(trx);
    const r = await sql<{ product_id: string }>`
      SELECT e.product_id FROM product_embeddings e JOIN products p ON p.id = e.product_id
      WHERE e.model_id = ${sql.lit(model.id)} ${q.filter ? sql`AND p.category = ${q.filter.category}` : sql``}
      ORDER BY e.embedding::halfvec(${sql.raw(String(dim))}) <=> ${q.vector}::halfvec(${sql.raw(String(dim))}) LIMIT ${k}`.execute(trx);
    return r.rows.map((x) => String(x.product_id));
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t = process.hrtime.bigint();
  const value = await fn();
  return { value, ms: ms(t) };
}

async function qps(run: (q: string) => Promise<unknown>, concurrency: number, total: number): Promise<number> {
  let next = 0;
  const t = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await run(queries[next++ % queries.length]!);
    }),
  );
  return total / (ms(t) / 1000);
}

// "ours" is the service's hot path: strategy from cached statistics, one statement, products included.
const estimator = new SelectivityEstimator(db);
await estimator.refresh();
const hotPath = (q: NeighbourQuery) => searchNeighbours(db, q, estimator);

const results: Record<string, string | number>[] = [];
for (const { label, filter } of only === 'storage' ? [] : selectivities) {
  const base = { model, filter, k };
  if (explain) {
    const probe = await nearestNeighbours(db, { ...base, vector: queries[0]! });
    console.log(
      `\n--- plan at ${label} (${probe.strategy}) ---\n${await explainNeighbours(db, { ...base, vector: queries[0]! }, probe.strategy, true)}`,
    );
  }
  const exactTimes: number[] = [];
  const oursTimes: number[] = [];
  const attrTimes: number[] = [];
  let attrRoundTrips = 0;
  let shortAttr = 0;
  const attrFilter = filter ? { attributes: [{ name: 'tier', values: [filter.category] }] } : null;
  const joinTimes: number[] = [];
  let recallHits = 0;
  let recallTotal = 0;
  let shortOurs = 0;
  let roundTrips = 0;
  let shortPost = 0;
  let recallPostHits = 0;
  const strategies = new Map<string, number>();
  const matchingCount = Number(
    (
      await sql<{
        n: string;
      }>`SELECT count(*)::text AS n FROM products p WHERE ${filter ? sql`p.category = ${filter.category}` : sql`true`}`.execute(db)
    ).rows[0]!.n,
  );
  // One untimed pass of the hot path first: the first query of a selectivity pays for plans and caches.
  for (const vector of queries) await hotPath({ ...base, vector });
  for (const vector of queries) {
    const exact = await timed(() => nearestNeighbours(db, { ...base, vector, strategy: 'exact' }));
    const ours = await timed(() => hotPath({ ...base, vector }));
    const post = await postFilteredHnsw({ ...base, vector });
    // The same hot path with the filter read from products through the join (the design before
    // migration 0008), so both designs are measured on the same data in the same run.
    if (filter) joinTimes.push((await timed(() => hotPath({ ...base, vector, filterOn: 'products' }))).ms);
    // The same selectivity as an attributes filter (JSON containment on the product's row).
    if (attrFilter) {
      const attr = await timed(() => hotPath({ ...base, filter: attrFilter, vector }));
      attrTimes.push(attr.ms);
      attrRoundTrips += attr.value.roundTrips;
      if (attr.value.neighbours.length < Math.min(k, matchingCount)) shortAttr++;
    }
    exactTimes.push(exact.ms);
    oursTimes.push(ours.ms);
    const truth = new Set(exact.value.neighbours.map((n) => n.productId));
    const expected = Math.min(k, matchingCount);
    if (ours.value.neighbours.length < expected) shortOurs++;
    if (post.length < expected) shortPost++;
    recallHits += ours.value.neighbours.filter((n) => truth.has(n.product.id)).length;
    roundTrips += ours.value.roundTrips;
    recallPostHits += post.filter((id) => truth.has(id)).length;
    recallTotal += truth.size;
    const s = ours.value.strategy + (ours.value.fellBack ? '→exact' : '');
    strategies.set(s, (strategies.get(s) ?? 0) + 1);
  }
  const oursRun = (vector: string) => hotPath({ ...base, vector });
  const exactRun = (vector: string) => nearestNeighbours(db, { ...base, vector, strategy: 'exact' });
  const conc = backend === 'postgres' ? 8 : 1; // PGlite is one session: concurrency only queues
  results.push({
    selectivity: label,
    strategy: [...strategies].map(([s, n]) => `${s}×${n}`).join(' '),
    'ours p50 ms': median(oursTimes),
    'ours p99 ms': percentile(oursTimes, 99),
    'ours QPS c1': 1000 / (oursTimes.reduce((a, b) => a + b, 0) / oursTimes.length),
    [`ours QPS c${conc}`]: await qps(oursRun, conc, nQueries * 2),
    'ours recall@10': recallHits / recallTotal,
    'ours statements/query': roundTrips / queries.length,
    'ours short': shortOurs,
    'join-filter p50 ms': joinTimes.length ? median(joinTimes) : '–',
    'attr-filter p50 ms': attrTimes.length ? median(attrTimes) : '–',
    'attr-filter statements/query': attrTimes.length ? attrRoundTrips / attrTimes.length : '–',
    'attr-filter short': attrTimes.length ? shortAttr : '–',
    'exact-scan p50 ms': median(exactTimes),
    [`exact-scan QPS c${conc}`]: await qps(exactRun, conc, Math.max(16, nQueries / 2)),
    'post-filter HNSW recall@10': recallPostHits / recallTotal,
    'post-filter HNSW short': shortPost,
  });
  console.error(`[bench] ${label} done`);
}
if (results.length)
  table(
    `Filtered top-${k} (${backend}, ${rows} rows, ${nQueries} queries per row; short = results with fewer than min(k, matches))`,
    results,
  );

// ---- in-memory peer: hnswlib-node, unfiltered ----------------------------------------------------
if (only === 'all') {
  const { default: hnswlib } = await import('hnswlib-node');
  const index = new hnswlib.HierarchicalNSW('cosine', dim);
  t0 = process.hrtime.bigint();
  index.initIndex(rows, 16, 64);
  for (let i = 0; i < rows; i++) index.addPoint(Array.from(space.vector(i)), i);
  const build = ms(t0) / 1000;
  index.setEf(100);
  const ids = await sql<{ id: string; sku: string }>`SELECT id, sku FROM products`.execute(db);
  const byOrdinal = new Map(ids.rows.map((r) => [Number(r.sku.slice(2)), String(r.id)]));
  const times: number[] = [];
  let hits = 0;
  for (let j = 0; j < nQueries; j++) {
    const qv = Array.from(space.query(j));
    const t = process.hrtime.bigint();
    const res = index.searchKnn(qv, k);
    times.push(ms(t));
    const exact = await nearestNeighbours(db, { model, filter: null, k, vector: queries[j]!, strategy: 'exact' });
    const truth = new Set(exact.neighbours.map((n) => n.productId));
    hits += res.neighbors.filter((n: number) => truth.has(byOrdinal.get(n)!)).length;
  }
  table(`Peer: hnswlib-node in memory, unfiltered (${rows} rows; M=16, ef_construction=64, ef=100)`, [
    {
      'build (s)': build,
      'p50 ms': median(times),
      'p99 ms': percentile(times, 99),
      'recall@10 vs PostgreSQL exact': hits / (nQueries * k),
      filters: 'none',
    },
  ]);
}

// ---- storage: vector vs halfvec ------------------------------------------------------------------
if ((storageCompare || only === 'storage') && backend === 'postgres') {
  await sql`CREATE TABLE bench_f32 AS SELECT product_id, embedding::vector(${sql.raw(String(dim))}) AS embedding FROM product_embeddings`.execute(
    db,
  );
  t0 = process.hrtime.bigint();
  await db.transaction().execute(async (trx) => {
    await sql`SET LOCAL maintenance_work_mem = '1GB'`.execute(trx);
    await sql`CREATE INDEX bench_f32_hnsw ON bench_f32 USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)`.execute(
      trx,
    );
  });
  const f32Build = ms(t0) / 1000;
  await sql`ANALYZE bench_f32`.execute(db);
  const f32Heap = Number((await sql<{ n: string }>`SELECT pg_table_size('bench_f32')::text AS n`.execute(db)).rows[0]!.n);
  const f32Index = await size('bench_f32_hnsw');
  // Both as full scans: index scans off, or the plain-column index on bench_f32 would answer.
  const scan = async (q: string, table: 'half' | 'f32') =>
    timed(() =>
      db.transaction().execute(async (trx) => {
        await sql`SET LOCAL enable_indexscan = off`.execute(trx);
        return table === 'half'
          ? sql`SELECT product_id FROM product_embeddings ORDER BY embedding <=> ${q}::halfvec LIMIT 10`.execute(trx)
          : sql`SELECT product_id FROM bench_f32 ORDER BY embedding <=> ${q}::vector LIMIT 10`.execute(trx);
      }),
    );
  const half: number[] = [];
  const f32: number[] = [];
  for (const q of queries.slice(0, 20)) {
    half.push((await scan(q, 'half')).ms);
    f32.push((await scan(q, 'f32')).ms);
  }
  table(`Storage: vector vs halfvec (${rows} rows, ${dim}-d)`, [
    {
      storage: 'halfvec (chosen)',
      'table MiB': heapBytes / 2 ** 20,
      'HNSW MiB': indexBytes / 2 ** 20,
      'HNSW build s': buildSeconds,
      'exact scan p50 ms': median(half),
    },
    {
      storage: 'vector',
      'table MiB': f32Heap / 2 ** 20,
      'HNSW MiB': f32Index / 2 ** 20,
      'HNSW build s': f32Build,
      'exact scan p50 ms': median(f32),
    },
  ]);
}

await stop();
