/**
 * This code's hot path against an earlier commit's, on the same cluster, query by query.
 *
 *   npx tsx bench/search/baseline.ts --baseline DIR --keep-state STATE [--queries 100] [--rounds 3]
 *
 * DIR is a checkout of the earlier commit (`git worktree add DIR <commit>`, with node_modules linked in);
 * STATE is a kept cluster that `bench/search/search.ts --keep-state STATE` loaded (one vector per
 * product, the categories of search.ts). Both hot paths (searchNeighbours, each with its own
 * SelectivityEstimator) run in this one process over one connection pool, on the same tables, indexes
 * and query vectors, alternating which goes first on every query. So the ratio measures the code —
 * the statement each sends, its planning and execution, the rows it reads back — and not two HNSW
 * graphs built separately, nor two processes' warm-up, nor the machine's drift between two runs.
 *
 * Why (issue 22): "the same catalog with 1 photo per product: within 1.2× of today's figures". Two
 * search.ts runs on two clusters loaded from the same data gave 1.2–2.2× for the same code change,
 * with the spread from the separately built graphs and from run-to-run drift on this 2-core machine.
 *
 * The baseline must read the same schema (an earlier commit's statement on this commit's tables): the
 * commit before multiple photos (7d68f10^) does, since migration 0010 kept product_embeddings' columns.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql } from 'kysely';
import { vectorLiteral } from '../../src/db/embeddings.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { searchNeighbours, type NeighbourQuery } from '../../src/search/query.js';
import { arg, median, percentile, printMachine, table } from '../lib/report.js';
// search.ts's model, vectors and categories: this bench reads the catalog that search.ts loaded.
import { model, selectivities, space } from './clustered-catalog.js';
import { benchDatabase, prewarm } from './database.js';

const baselineDir = arg('baseline', '');
const keepState = arg('keep-state', '');
const nQueries = Number(arg('queries', '100'));
const rounds = Number(arg('rounds', '3'));
if (!baselineDir || !keepState) throw new Error('--baseline DIR and --keep-state STATE are required (see the header)');
const k = 10;

type HotPath = (db: unknown, q: NeighbourQuery, estimator: unknown) => Promise<{ neighbours: { product: { id: string } }[] }>;
// The earlier commit's modules, typed as much as this bench uses of them.
const baselineModule = <T>(file: string) => import(pathToFileURL(path.resolve(baselineDir, file)).href) as Promise<T>;
const { searchNeighbours: baselineSearch } = await baselineModule<{ searchNeighbours: HotPath }>('src/search/query.ts');
const { SelectivityEstimator: BaselineEstimator } = await baselineModule<{
  SelectivityEstimator: new (db: unknown) => { refresh(): Promise<void> };
}>('src/search/estimate.ts');
const baselineCommit = (() => {
  try {
    const head = readFileSync(path.resolve(baselineDir, '.git'), 'utf8');
    const gitDir = /^gitdir: (.*)$/m.exec(head)?.[1]?.trim();
    return gitDir ? readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim().slice(0, 7) : head.trim().slice(0, 7);
  } catch {
    return 'unknown';
  }
})();

printMachine();
const { database, stop } = await benchDatabase('postgres', { keepState });
const db = database.db;
const products = Number((await sql<{ n: string }>`SELECT count(*)::text AS n FROM products`.execute(db)).rows[0]!.n);
if (products === 0) throw new Error(`${keepState} holds no catalog: load it with bench/search/search.ts --keep-state first`);
console.error(`[bench] ${products} products; baseline ${baselineDir} at ${baselineCommit}`);
await prewarm(db, ['product_embeddings', 'products']);

const ours = new SelectivityEstimator(db);
await ours.refresh();
const theirs = new BaselineEstimator(db);
await theirs.refresh();
const queries = Array.from({ length: nQueries }, (_, j) => vectorLiteral(space.query(j)));

const results: Record<string, string | number>[] = [];
for (const { label, filter } of selectivities) {
  const q = (vector: string): NeighbourQuery => ({ model, filter, k, vector, vectorsPerProduct: 1 });
  const runOurs = () => (vector: string) => searchNeighbours(db, q(vector), ours);
  const runTheirs = () => (vector: string) => baselineSearch(db, q(vector), theirs);
  const timed = async (run: (v: string) => Promise<{ neighbours: { product: { id: string } }[] }>, vector: string) => {
    const t = process.hrtime.bigint();
    const r = await run(vector);
    return { ms: Number(process.hrtime.bigint() - t) / 1e6, ids: r.neighbours.map((n) => n.product.id) };
  };
  // One untimed pass of each: the first query of a selectivity pays for plans and caches.
  for (const v of queries) {
    await runOurs()(v);
    await runTheirs()(v);
  }
  const oursMs: number[] = [];
  const theirsMs: number[] = [];
  let differing = 0;
  for (let r = 0; r < rounds; r++)
    for (let j = 0; j < queries.length; j++) {
      const v = queries[j]!;
      // Alternate which side goes first, so neither always meets the other's warm caches.
      const first = (j + r) % 2 === 0;
      const a = first ? await timed(runOurs(), v) : null;
      const b = await timed(runTheirs(), v);
      const c = a ?? (await timed(runOurs(), v));
      oursMs.push(c.ms);
      theirsMs.push(b.ms);
      if (r === 0 && c.ids.join() !== b.ids.join()) differing++;
    }
  results.push({
    selectivity: label,
    'ours p50 ms': median(oursMs),
    'ours p99 ms': percentile(oursMs, 99),
    'baseline p50 ms': median(theirsMs),
    'baseline p99 ms': percentile(theirsMs, 99),
    'p50 ratio': median(oursMs) / median(theirsMs),
    'answers differing': `${differing}/${queries.length}`,
  });
  console.error(`[bench] ${label} done`);
}
table(
  `This code against ${baselineCommit}, same cluster (${products} products, ${nQueries} queries × ${rounds} rounds, alternated)`,
  results,
);
await stop();
