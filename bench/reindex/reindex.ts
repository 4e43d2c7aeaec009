/**
 * Reindex throughput: the real job (pg-boss queue, keyset batches, engine batches, multi-row inserts, index
 * built after the load, atomic switch) over a synthetic catalog whose images are stored as the service
 * stores them (product_images). Prints one Markdown table with every variant of the run side by side.
 *
 *   npx tsx bench/reindex/reindex.ts [--rows 100000] [--small 10000] [--backend postgres|pglite|both] [--b16 64]
 *
 * --rows: the large run (PostgreSQL; a throwaway cluster unless BENCH_DATABASE_URL); --small: the size of
 * the comparison runs (index deferred vs maintained row by row, PGlite vs PostgreSQL); --b16 N: also N
 * products on the compute-faithful SigLIP 2 B/16 tower (slow on a small CPU; 0 skips it).
 */
import os from 'node:os';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Database } from '../../src/db/connect.js';
import { upsertEmbeddings } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import { getReindexJob } from '../../src/db/reindex-jobs.js';
import { createEmbedder, type Embedder } from '../../src/embedding/index.js';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { renderProductImage, SHAPES, COLOURS, type Colour } from '../../src/demo/synthetic-catalog.js';
import { JobRunner } from '../../src/jobs/runner.js';
import { createLogger } from '../../src/log.js';
import { buildModelIndex, ensureModelIndex, modelIndexName } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { ModelService } from '../../src/models/service.js';
import { ensureB16 } from '../embedding/common.js';
import { arg, table } from '../lib/report.js';
import { benchDatabase } from '../search/database.js';

const log = createLogger('warn');
const rowsLarge = Number(arg('rows', '100000'));
const rowsSmall = Number(arg('small', '10000'));
const backendArg = arg('backend', 'both');
const b16Rows = Number(arg('b16', '64'));
const batchSize = Number(arg('batch', '256'));
const indexRows = Number(arg('index-rows', '20000'));

async function images(): Promise<Array<{ bytes: Buffer; sha: string }>> {
  const out: Array<{ bytes: Buffer; sha: string }> = [];
  for (const shape of SHAPES) {
    for (const colour of Object.keys(COLOURS) as Colour[]) {
      const bytes = await renderProductImage(shape, colour, { size: 128, format: 'jpeg' });
      out.push({ bytes, sha: createHash('sha256').update(bytes).digest('hex') });
    }
  }
  return out;
}

/** n products with stored images (80 distinct looks, as the demo catalog), and an active model A with no vectors. */
async function seed(database: Database, n: number, imgs: Array<{ bytes: Buffer; sha: string }>): Promise<void> {
  const db = database.db;
  for (let start = 1; start <= n; start += 50_000) {
    const end = Math.min(n, start + 49_999);
    await sql`INSERT INTO products (sku, title, category) SELECT 'B-' || i, 'bench product ' || i, 'c' || (i % 6) FROM generate_series(${start}::int, ${end}::int) i`.execute(
      db,
    );
  }
  for (const [k, im] of imgs.entries()) {
    await sql`INSERT INTO product_images (product_id, sha256, format, width, height, original, thumbnail)
      SELECT id, ${im.sha}, 'jpeg', 128, 128, ${im.bytes}, ${im.bytes} FROM products WHERE id % ${imgs.length} = ${k}`.execute(db);
  }
  await sql`ANALYZE`.execute(db);
  await registerModel(db, { id: 'bench/previous', source: 'bench', variant: null, dimension: 32 });
  await activateModel(db, 'bench/previous');
}

async function embedderFor(dir: string): Promise<Embedder> {
  return createEmbedder(
    {
      modelDir: dir,
      provider: 'cpu',
      workers: 1,
      intraOpThreads: os.availableParallelism(),
      maxBatch: 32,
      maxWaitMs: 2,
    },
    log,
  );
}

interface Run {
  backend: 'postgres' | 'pglite';
  rows: number;
  model: string;
  modelDir: string;
  deferIndex: boolean;
}

async function run(r: Run, imgs: Array<{ bytes: Buffer; sha: string }>): Promise<Record<string, string | number>> {
  const { database, stop } = await benchDatabase(r.backend);
  try {
    await seed(database, r.rows, imgs);
    const runtime = new ModelService(database, log);
    const embedder = await embedderFor(r.modelDir);
    const model = await runtime.add(embedder, r.model);
    const runner = new JobRunner(database, runtime, log, {
      batchSize,
      throttleMs: 0,
      leaseSeconds: 60,
      pollIntervalMs: 500,
      work: true,
      deferIndex: r.deferIndex,
    });
    await runner.start();
    const t0 = Date.now();
    const job = await runner.enqueueReindex({ model: model.id });
    let j = job;
    for (;;) {
      j = (await getReindexJob(database.db, job.id))!;
      if (['succeeded', 'failed', 'cancelled'].includes(j.state)) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const total = (Date.now() - t0) / 1000;
    const active = await sql<{ id: string }>`SELECT id FROM embedding_models WHERE is_active`.execute(database.db);
    await runner.stop();
    await runtime.close();
    if (j.state !== 'succeeded' || active.rows[0]?.id !== model.id) throw new Error(`reindex ended ${j.state}: ${j.error}`);
    // the index build alone, measured again after the run (drop + build)
    const t1 = Date.now();
    await sql`DROP INDEX IF EXISTS ${sql.id(modelIndexName(model.id))}`.execute(database.db);
    await buildModelIndex(database.db, model, database.kind);
    const indexSecs = (Date.now() - t1) / 1000;
    return {
      backend: r.backend,
      model: r.model,
      products: r.rows,
      'HNSW index': r.deferIndex ? 'built after load' : 'maintained per row',
      'total s': total,
      'products/s': r.rows / total,
      'index build alone s': indexSecs,
    };
  } finally {
    await stop();
  }
}

/**
 * The index decision in isolation, at the real model's width: n 768-d vectors written in the job's batches
 * (multi-row inserts of 256) into a table whose HNSW index exists, versus written first and indexed after.
 */
async function indexStrategy(backend: 'postgres' | 'pglite', n: number): Promise<Array<Record<string, string | number>>> {
  const out: Array<Record<string, string | number>> = [];
  for (const after of [false, true]) {
    const { database, stop } = await benchDatabase(backend);
    try {
      const db = database.db;
      await sql`INSERT INTO products (sku, title, category) SELECT 'V-' || i, 'v ' || i, 'c' FROM generate_series(1, ${n}::int) i`.execute(
        db,
      );
      const ids = (await sql<{ id: string }>`SELECT id FROM products ORDER BY id`.execute(db)).rows.map((r) => String(r.id));
      const model = await registerModel(db, { id: 'bench/768', source: 'bench', variant: null, dimension: 768 });
      let seed = 7;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
      const t0 = Date.now();
      if (!after) await ensureModelIndex(db, model);
      for (let i = 0; i < n; i += 256) {
        const rows = ids.slice(i, i + 256).map((productId) => {
          const v = Float32Array.from({ length: 768 }, rnd);
          const norm = Math.hypot(...v);
          return { productId, modelId: model.id, embedding: v.map((x) => x / norm), imageSha256: 'a'.repeat(64) };
        });
        await upsertEmbeddings(db, rows);
      }
      const loaded = (Date.now() - t0) / 1000;
      if (after) await buildModelIndex(db, model, backend);
      const total = (Date.now() - t0) / 1000;
      out.push({
        backend,
        'vectors (768-d)': n,
        'HNSW index': after ? 'built after load' : 'maintained per row',
        'load s': loaded,
        'index build s': after ? total - loaded : 0,
        'total s': total,
        'vectors/s': n / total,
      });
    } finally {
      await stop();
    }
  }
  return out;
}

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-bench-reindex-'));
try {
  const tiny = path.join(tmp, 'tiny');
  await writeTinyModel(tiny, { dimension: 64, modelId: 'bench/tiny-64' });
  const imgs = await images();
  const backends: Array<'postgres' | 'pglite'> = backendArg === 'both' ? ['postgres', 'pglite'] : [backendArg as 'postgres' | 'pglite'];
  const results: Array<Record<string, string | number>> = [];
  const runs: Run[] = [];
  for (const b of backends) runs.push({ backend: b, rows: rowsSmall, model: 'tiny (64-d)', modelDir: tiny, deferIndex: true });
  if (backends.includes('postgres'))
    runs.push({ backend: 'postgres', rows: rowsSmall, model: 'tiny (64-d)', modelDir: tiny, deferIndex: false });
  if (backends.includes('postgres') && rowsLarge > 0)
    runs.push({ backend: 'postgres', rows: rowsLarge, model: 'tiny (64-d)', modelDir: tiny, deferIndex: true });
  if (b16Rows > 0)
    runs.push({
      backend: backends[0]!,
      rows: b16Rows,
      model: 'SigLIP 2 B/16 (768-d, random weights)',
      modelDir: await ensureB16(),
      deferIndex: true,
    });
  // warm-up (not reported): first-run costs (ONNX session, cluster caches) out of the comparisons
  await run({ backend: backends[0]!, rows: 1000, model: 'tiny (64-d)', modelDir: tiny, deferIndex: true }, imgs);
  for (const r of runs) {
    console.error(`running ${r.backend} ${r.model} ${r.rows} products (${r.deferIndex ? 'index after load' : 'index per row'}) …`);
    results.push(await run(r, imgs));
  }
  table(`Reindex (${os.availableParallelism()} CPUs, batch ${batchSize}, images 128×128 JPEG)`, results);
  if (indexRows > 0) {
    const idx: Array<Record<string, string | number>> = [];
    for (const b of backends) idx.push(...(await indexStrategy(b, b === 'pglite' ? Math.min(indexRows, 10_000) : indexRows)));
    table('HNSW index during vs after the bulk load (768-d halfvec, m=16, ef_construction=64)', idx);
  }
} finally {
  await fs.rm(tmp, { recursive: true, force: true });
}
process.exit(0);
