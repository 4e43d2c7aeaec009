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
  type Run = (vector: string) => Promise<{ neighbours: { product: { id: string } }[] }>;
  // This code twice: as a client asking which photo matched (the default) and as one that does not
  // (the statement then reads no photo: NeighbourQuery.matchedPhotos), which is all the earlier code answered.
  const sides: Array<{ run: Run; ms: number[] }> = [
    { run: (v) => searchNeighbours(db, q(v), ours), ms: [] },
    { run: (v) => searchNeighbours(db, { ...q(v), matchedPhotos: false }, ours), ms: [] },
    { run: (v) => baselineSearch(db, q(v), theirs), ms: [] },
  ];
  const timed = async (run: Run, vector: string) => {
    const t = process.hrtime.bigint();
    const r = await run(vector);
    return { ms: Number(process.hrtime.bigint() - t) / 1e6, ids: r.neighbours.map((n) => n.product.id) };
  };
  // One untimed pass of each: the first query of a selectivity pays for plans and caches.
  for (const v of queries) for (const side of sides) await side.run(v);
  let differing = 0;
  for (let r = 0; r < rounds; r++)
    for (let j = 0; j < queries.length; j++) {
      const v = queries[j]!;
      // Rotate which side goes first, so none always meets another's warm caches.
      const ids: string[] = [];
      for (let i = 0; i < sides.length; i++) {
        const at = (i + j + r) % sides.length;
        const { ms, ids: found } = await timed(sides[at]!.run, v);
        sides[at]!.ms.push(ms);
        ids[at] = found.join();
      }
      if (r === 0 && new Set(ids).size > 1) differing++;
    }
  const [named, bare, earlier] = sides.map((side) => side.ms) as [number[], number[], number[]];
  results.push({
    selectivity: label,
    'ours p50 ms': median(named),
    'ours p99 ms': percentile(named, 99),
    'ours, no photo asked, p50 ms': median(bare),
    'baseline p50 ms': median(earlier),
    'baseline p99 ms': percentile(earlier, 99),
    'p50 ratio': median(named) / median(earlier),
    'p50 ratio, no photo asked': median(bare) / median(earlier),
    'answers differing': `${differing}/${queries.length}`,
  });
  console.error(`[bench] ${label} done`);
}
table(
  `This code against ${baselineCommit}, same cluster (${products} products, ${nQueries} queries × ${rounds} rounds, alternated)`,
  results,
);
await stop();
