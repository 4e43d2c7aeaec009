/**
 * `npm run bench`: every benchmark in turn, each printing its own tables (peers in the same run).
 * Long: the compute-faithful SigLIP 2 model and the 100k-row search dominate. Run one with
 * `npx tsx bench/<area>/<name>.ts`, or by name: `npm run bench -- embedding-int8`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const benches: Array<[string, string[]]> = [
  ['bench/embedding/preprocess.ts', []],
  ['bench/embedding/phone-photos.ts', []],
  ['bench/embedding/photo-search.ts', []],
  ['bench/embedding/throughput.ts', []],
  ['bench/embedding/peer.ts', []],
  ['bench/embedding/int8.ts', []],
  ['bench/search/search.ts', ['--rows', '100000', '--storage-compare']],
  ['bench/search/search.ts', ['--rows', '20000', '--backend', 'pglite', '--queries', '50']],
  ['bench/search/hybrid.ts', ['--rows', '20000']],
  ['bench/search/graphql-load.ts', ['--rows', '20000']],
  ['bench/search/graphql-load.ts', ['--rows', '20000', '--backend', 'pglite']],
  ['bench/search/replica.ts', ['--rows', '20000']],
  ['bench/search/photos.ts', ['--products', '5000', '--photos', '4']],
  ['bench/eval/held-out.ts', ['--products', '80', '--photos', '4']],
  ['bench/catalog/duplicates.ts', ['--originals', '400', '--catalog', '10000', '--vectors', '100000']],
  ['bench/reindex/reindex.ts', []],
  ['bench/reliability/reliability.ts', []],
];

// `npm run bench -- embedding-int8 search-search`: only the named ones (<folder>-<file>, or a whole <folder>)
const only = process.argv.slice(2);
const nameOf = (file: string) =>
  file
    .replace(/^bench\//, '')
    .replace(/\.ts$/, '')
    .replace(/\//g, '-');

let failed = 0;
for (const [file, args] of benches) {
  if (!existsSync(file)) continue;
  if (only.length && !only.includes(nameOf(file)) && !only.includes(nameOf(file).split('-')[0]!)) continue;
  console.log(`\n## ${file} ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`${file} failed (exit ${r.status})`);
  }
}
process.exit(failed ? 1 : 0);
