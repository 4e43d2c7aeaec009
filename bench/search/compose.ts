/**
 * Retrieval evidence for the shopper's queries (issue 24): on a catalog where the answer is known, how
 * often the composed query and the recommendation strategies find it, against the single-photo query.
 *
 *   npx tsx bench/search/compose.ts [--products 240] [--targets 40] [--backend pglite|postgres]
 *
 * The catalog is the demo's colour × shape catalog (src/demo/seed.ts: 8 shapes × 10 colours, each look
 * `products / 80` times, repeats as perturbed photos), embedded by the generated tiny stand-in model
 * (scripts/models/), which sees colours and shapes. For each target look (shape S, colour C) the shopper
 * has a photo of the shape in another colour (S, A) and one of another shape in the wanted colour (B, C);
 * their photos are perturbed copies (a shopper's own), not the catalog's. Relevant: the products of look
 * (S, C). recall@10 = |top 10 ∩ relevant| / min(10, |relevant|).
 *
 * Rows:
 * - photo (S,A): the single-photo query;
 * - composed (S,A) + (B,C): one vector, the weighted sum of unit vectors, normalised (search/compose.ts);
 * - composed (S,A) + (B,C) − (B,A): with a photo of what to move away from;
 * - fused by rank: the alternative set aside in docs/ARCHITECTURE.md, one query per term (k 50 each) and
 *   reciprocal-rank fusion, Σ w / (60 + rank), a negative term subtracting;
 * - recommendProducts with example products instead of photos: one positive (S,A); AVERAGE_VECTOR and
 *   BEST_SCORE with positives (S,A), (B,C) and the negative (B,A);
 * - "either": relevant the products of (S,A) or (B,C) (what BEST_SCORE is for), positives (S,A), (B,C).
 *
 * Retrieval figures do not depend on the machine's load; the load average is printed all the same.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { loadEmbedder, startService } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { demoProducts, seedOverHttp, type DemoProduct } from '../../src/demo/seed.js';
import { perturb, renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { createLogger } from '../../src/log.js';
import type { ComposedTerm, ProductMatch } from '../../src/search/service.js';
import { arg, table } from '../lib/report.js';
import { benchDatabase } from './database.js';

const products = Number(arg('products', '240'));
const targets = Number(arg('targets', '40'));
const backend = arg('backend', 'pglite') as 'postgres' | 'pglite';
const K = 10;
const ADMIN_TOKEN = 'bench-admin-token-0123456789';

console.log(
  `load average at start: ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} (${os.availableParallelism()} cores)`,
);
try {
  const flags = execFileSync('lscpu', { encoding: 'utf8' }).match(/^Flags:\s*(.*)$/m)?.[1] ?? '';
  console.log(
    `lscpu flags (avx*, fma): ${flags
      .split(' ')
      .filter((f) => /^(avx|fma)/.test(f))
      .join(' ')}`,
  );
} catch {
  console.log('lscpu: not available');
}

const modelDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-bench-tiny-'));
await writeTinyModel(modelDir);
const { database, stop } = await benchDatabase(backend);
const config = loadConfig({
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  ADMIN_TOKEN,
  DATA_DIR: path.join(modelDir, 'data'),
  RATE_LIMIT_POINTS: '1000000000',
  RATE_LIMIT_ADDRESS_POINTS: '1000000000',
});
const log = createLogger(config.logLevel);
const service = await startService(config, log, {
  database,
  embedder: { embedder: await loadEmbedder(config, modelDir, log), source: 'bench' },
});
const search = service.services.search;

const catalog = await demoProducts(products, 24);
const ids = await seedOverHttp(catalog, { url: service.http.url, adminToken: ADMIN_TOKEN, batchSize: 40 });
const looks = new Map<string, DemoProduct[]>(); // "shape colour" → its products
for (const p of catalog) looks.set(`${p.shape} ${p.colour}`, [...(looks.get(`${p.shape} ${p.colour}`) ?? []), p]);
const shapes = [...new Set(catalog.map((p) => p.shape))];
const colours = [...new Set(catalog.map((p) => p.colour))];
console.error(`[bench] ${backend}, ${catalog.length} products, ${looks.size} looks`);

let seed = 7;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: T[], not: T) => {
  const rest = xs.filter((x) => x !== not);
  return rest[Math.floor(rand() * rest.length)]!;
};
const photo = async (shape: DemoProduct['shape'], colour: DemoProduct['colour']) =>
  perturb(await renderProductImage(shape, colour), 'crop');
const idOf = (p: DemoProduct) => ids.get(p.sku)!;

const recall = (matches: Array<{ product: { id: string } }>, relevant: Set<string>) =>
  matches.slice(0, K).filter((m) => relevant.has(m.product.id)).length / Math.min(K, relevant.size);

/** Reciprocal-rank fusion of one ranking per term: Σ w / (60 + rank). */
function fuseByRank(rankings: ProductMatch[][], weights: number[]): Array<{ product: { id: string } }> {
  const score = new Map<string, number>();
  rankings.forEach((r, t) => r.forEach((m, i) => score.set(m.product.id, (score.get(m.product.id) ?? 0) + weights[t]! / (60 + i + 1))));
  return [...score.entries()].sort((a, b) => b[1] - a[1]).map(([id]) => ({ product: { id } }));
}

const rows: Record<string, number[]> = {};
const add = (name: string, v: number) => (rows[name] ??= []).push(v);

for (let q = 0; q < targets; q++) {
  const S = shapes[Math.floor(rand() * shapes.length)]!;
  const C = colours[Math.floor(rand() * colours.length)]!;
  const A = pick(colours, C);
  const B = pick(shapes, S);
  const relevant = new Set(looks.get(`${S} ${C}`)!.map(idOf));
  const [sa, bc, ba] = [await photo(S, A), await photo(B, C), await photo(B, A)];
  const term = (bytes: Buffer, weight: number): ComposedTerm => ({ kind: 'image', image: { kind: 'bytes', bytes }, weight });

  add('photo (S,A) alone', recall((await search.similarToImage({ kind: 'bytes', bytes: sa }, { k: K })).matches, relevant));
  add('composed (S,A) + (B,C)', recall((await search.similarToComposed([term(sa, 1), term(bc, 1)], { k: K })).matches, relevant));
  add(
    'composed (S,A) + (B,C) − (B,A)',
    recall((await search.similarToComposed([term(sa, 1), term(bc, 1), term(ba, -1)], { k: K })).matches, relevant),
  );
  const perTerm = await Promise.all(
    [sa, bc, ba].map(async (bytes) => (await search.similarToImage({ kind: 'bytes', bytes }, { k: 50 })).matches),
  );
  add('fused by rank (S,A) + (B,C)', recall(fuseByRank(perTerm.slice(0, 2), [1, 1]), relevant));
  add('fused by rank (S,A) + (B,C) − (B,A)', recall(fuseByRank(perTerm, [1, 1, -1]), relevant));

  // The same with example products (one of each look) instead of photos.
  const ex = (shape: string, colour: string) => idOf(looks.get(`${shape} ${colour}`)![0]!);
  const [pSA, pBC, pBA] = [ex(S, A), ex(B, C), ex(B, A)];
  add('recommend: one positive (S,A)', recall((await search.recommend({ positive: [pSA], k: K })).matches, relevant));
  for (const strategy of ['AVERAGE_VECTOR', 'BEST_SCORE'] as const) {
    add(
      `recommend ${strategy}: + (S,A), (B,C)`,
      recall((await search.recommend({ positive: [pSA, pBC], strategy, k: K })).matches, relevant),
    );
    add(
      `recommend ${strategy}: + (S,A), (B,C), − (B,A)`,
      recall((await search.recommend({ positive: [pSA, pBC], negative: [pBA], strategy, k: K })).matches, relevant),
    );
  }
  // "Either look": the products of (S,A) or (B,C), examples left out.
  const either = new Set([...looks.get(`${S} ${A}`)!, ...looks.get(`${B} ${C}`)!].map(idOf).filter((id) => id !== pSA && id !== pBC));
  add('either look: one positive (S,A)', recall((await search.recommend({ positive: [pSA], k: K })).matches, either));
  for (const strategy of ['AVERAGE_VECTOR', 'BEST_SCORE'] as const)
    add(
      `either look: ${strategy} + (S,A), (B,C)`,
      recall((await search.recommend({ positive: [pSA, pBC], strategy, k: K })).matches, either),
    );
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
table(
  `recall@${K}, ${targets} target looks, ${catalog.length} products (${catalog.length / looks.size} per look), tiny stand-in model, ${backend}`,
  Object.entries(rows).map(([query, xs]) => ({
    query,
    [`recall@${K}`]: mean(xs),
    'targets fully found': xs.filter((x) => x === 1).length,
  })),
);

await service.stop();
await stop();
await fs.rm(modelDir, { recursive: true, force: true });
