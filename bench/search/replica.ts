/**
 * Search throughput with one primary against primary + one streaming replica (DATABASE_READ_URL).
 *
 *   npx tsx bench/search/replica.ts [--rows 20000] [--dim 256] [--concurrency 16] [--seconds 10] [--rounds 2]
 *   npm run bench -- search-replica
 *
 * The catalog is loaded into a fresh database of a throwaway cluster (or BENCH_DATABASE_URL's), then a
 * hot standby is made from it with pg_basebackup -R (scripts/pg-replica.sh) and the same queries run
 * through the search service (similarProducts by product: the stored vector, then the one similarity
 * statement) at a fixed concurrency for a fixed time, alternating the two setups round by round:
 * - primary: the service's reads on the primary alone;
 * - primary + replica: its reads routed (src/db/read-routing.ts): all on the replica while it is up and
 *   no write fence is pending.
 * Both servers run on this machine and share its cores, so the replica adds connections and caches, not
 * CPU: the figures say what routing costs and whether it spreads the load, not what a replica on its own
 * host would add. The load average is printed with each row; quote figures only from a quiet machine.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { sql } from 'kysely';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { upsertEmbeddings } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import type { ImageLimits } from '../../src/images/decode.js';
import type { FetchImageOptions } from '../../src/images/fetch.js';
import { createLogger } from '../../src/log.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { ModelService } from '../../src/models/service.js';
import { SearchService } from '../../src/search/service.js';
import { embeddingLikeSpace } from '../../test/support/vectors.js';
import { arg, median, percentile, table } from '../lib/report.js';
import { benchDatabase } from './database.js';

const rows = Number(arg('rows', '20000'));
const dim = Number(arg('dim', '256'));
const concurrency = Number(arg('concurrency', '16'));
const seconds = Number(arg('seconds', '10'));
const rounds = Number(arg('rounds', '2'));
const poolSize = Math.max(4, Math.ceil(concurrency / 2));
const model = { id: `bench/replica-${dim}`, dimension: dim };
const space = embeddingLikeSpace({ dimension: dim, seed: 31 });
const categories = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];

const { database, url, stop } = await benchDatabase('postgres');
const replicaEnv = { ...process.env, PG_REPLICA_STATE: process.env.PG_REPLICA_STATE ?? '.cache/pg-bench-replica' };
let replicaStarted = false;
let setups: Array<{ name: string; database: Database; search: SearchService }> = [];
try {
  const db = database.db;
  console.error(`[bench] ${rows} products × ${dim}-d, concurrency ${concurrency}, ${seconds} s × ${rounds} rounds per setup`);
  await registerModel(db, { ...model, source: 'bench', variant: null });
  await activateModel(db, model.id);
  const ids: string[] = [];
  for (let start = 0; start < rows; start += 2000) {
    const ns = Array.from({ length: Math.min(2000, rows - start) }, (_, j) => start + j);
    const inserted = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category, price, in_stock)
      SELECT 'RP-' || i, 'product ' || i, c, (i % 100)::numeric, true
      FROM unnest(${ns}::int[], ${ns.map((i) => categories[i % categories.length]!)}::text[]) AS t(i, c) ORDER BY i
      RETURNING id`.execute(db);
    const batch = inserted.rows.map((r) => String(r.id));
    ids.push(...batch);
    await upsertEmbeddings(
      db,
      batch.map((productId, j) => ({ productId, modelId: model.id, embedding: space.vector(start + j), imageSha256: 'f'.repeat(64) })),
    );
  }
  await ensureModelIndex(db, model);
  await sql`ANALYZE`.execute(db);

  // The standby is made after the load: its base backup holds the catalog and the index.
  const clusterUrl = new URL(url!);
  clusterUrl.pathname = '/postgres';
  const standby = new URL(
    execFileSync('scripts/pg-replica.sh', ['start', clusterUrl.toString()], { env: replicaEnv, encoding: 'utf8' }).trim(),
  );
  replicaStarted = true;
  standby.pathname = new URL(url!).pathname;

  const log = createLogger('silent');
  const build = async (name: string, readUrls: string[]) => {
    const d = await openDatabase({ kind: 'postgres', url: url!, poolSize, ...(readUrls.length ? { readUrls } : {}) });
    const models = new ModelService(d, log);
    return { name, database: d, search: new SearchService(d.reads, models, {} as FetchImageOptions, {} as ImageLimits) };
  };
  setups = [await build('primary', []), await build('primary + replica', [standby.toString()])];
  await setups[1]!.database.readRouter!.caughtUp(60_000);

  // Unfiltered and one-category (10 %) queries by product, the product ids spread over the catalog.
  const queryOf = (i: number) => ({
    id: ids[(i * 7919) % ids.length]!,
    ...(i % 2 ? { category: categories[i % categories.length]! } : {}),
  });
  const runFor = async (search: SearchService) => {
    const latencies: number[] = [];
    let errors = 0;
    let next = 0;
    const until = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < until) {
          const q = queryOf(next++);
          const t0 = process.hrtime.bigint();
          try {
            await search.similarToImage({ kind: 'product', id: q.id }, { k: 10, ...(q.category ? { category: q.category } : {}) });
            latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          } catch {
            errors++;
          }
        }
      }),
    );
    return { latencies, errors };
  };

  // Warm both (connections, caches of both servers) before measuring.
  for (const s of setups) {
    const saved = Date.now();
    await Promise.all(
      Array.from({ length: concurrency }, (_, i) => s.search.similarToImage({ kind: 'product', id: queryOf(i).id }, { k: 10 })),
    );
    console.error(`[bench] warmed ${s.name} in ${Date.now() - saved} ms`);
  }

  const results: Record<string, string | number>[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const s of setups) {
      const router = s.database.readRouter;
      const before = router ? { ...router.stats.statements } : null;
      const { latencies, errors } = await runFor(s.search);
      const onReplica = router && before ? router.replicaNames.reduce((n, r) => n + router.stats.statements[r]! - (before[r] ?? 0), 0) : 0;
      const onPrimary = router && before ? router.stats.statements.primary! - before.primary! : latencies.length * 2;
      results.push({
        round,
        setup: s.name,
        concurrency,
        queries: latencies.length,
        'queries/s': latencies.length / seconds,
        'p50 ms': median(latencies),
        'p95 ms': percentile(latencies, 95),
        errors,
        'statements on primary': onPrimary,
        'statements on replica': onReplica,
        'load avg (1 min)': os.loadavg()[0]!,
      });
    }
  }
  table(
    `Search throughput: one primary vs primary + one streaming replica (${rows} × ${dim}-d, k = 10, ${os.availableParallelism()} cores shared by both servers)`,
    results,
  );
  console.log(
    '\nstatements: two per query (the product’s stored vector, then the similarity statement). Without the router the primary runs all of them (counted as 2 × queries).',
  );
} finally {
  for (const s of setups) await s.database.close();
  if (replicaStarted) execFileSync('scripts/pg-replica.sh', ['stop'], { env: replicaEnv, stdio: 'ignore' });
  await stop();
}
