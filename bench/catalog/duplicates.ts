/**
 * Catalog intelligence (issue 25): the near-duplicate threshold, duplicate detection's precision/recall on
 * planted copies and its run time, and tagging throughput.
 *
 *   npx tsx bench/catalog/duplicates.ts [--model-dir DIR] [--originals 400] [--catalog 10000] [--planted 0.05]
 *                                       [--vectors 100000] [--backend postgres|pglite] [--parts threshold,catalog,scale]
 *
 * 1. threshold: generated photos (2–4 coloured shapes at random places on a coloured ground, drawn by sharp),
 *    each perturbed three ways as a merchant's re-upload would be (src/demo/synthetic-catalog.ts perturb():
 *    resized to 60 %×75 %, recompressed as JPEG quality 40, cropped 3 % a side), all embedded by the
 *    generated model (default: the tiny test model written to a temporary directory; --model-dir a
 *    directory: a real checkpoint's, or one from `npm run model:generate -- b16`, whose random weights map
 *    distinct photos together: median nearest other photo 0.996, every photo's above 0.95, in a run of 200,
 *    so its table says nothing of a threshold). Per perturbation, the cosine of a photo and its
 *    copy; against it, each photo's nearest *other* photo. For each candidate threshold: recall over the
 *    copies and the share of photos whose nearest other photo would be taken for a duplicate.
 * 2. catalog: --catalog generated photos stored as products (photo rows and vectors as ingest would leave
 *    them, written directly), --planted of them copied once with a perturbation; scanDuplicates at the
 *    default threshold through the model's HNSW index; precision and recall of the pairs against the planted
 *    ones, the scan's time. Then a tagging run (10 colour labels) over the same catalog: products/s.
 * 3. scale: --vectors products on 768-d embedding-like vectors (test/support/vectors.ts, as the search
 *    benchmarks), 5 % planted near-copies (the vector plus noise of norm ≈ 0.1): the scan's time at that
 *    size. The photos' generator cannot make 100 000 in reasonable time on this machine; the run time
 *    depends on the number of photos and the index, not on what the vectors show.
 *
 * Prints the load average and the CPU's flags; the figures go in BENCHMARKS.md only from a quiet run.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql, type Kysely } from 'kysely';
import sharp from 'sharp';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { perturb, type Perturbation } from '../../src/demo/synthetic-catalog.js';
import { DEFAULT_DUPLICATE_THRESHOLD, scanDuplicates } from '../../src/db/duplicates.js';
import { vectorLiteral } from '../../src/db/embeddings.js';
import { claimReindexJob, insertTagJob } from '../../src/db/reindex-jobs.js';
import type { DB } from '../../src/db/types.js';
import { createEmbedder, type Embedder } from '../../src/embedding/index.js';
import { DEFAULT_IMAGE_LIMITS } from '../../src/images/decode.js';
import { decodeForModel } from '../../src/images/embed.js';
import { runTagging } from '../../src/jobs/tag.js';
import { createLogger } from '../../src/log.js';
import { dropModelIndex, ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { embeddingLikeSpace, seededRandom } from '../../test/support/vectors.js';
import { arg, ms, percentile, printMachine, table } from '../lib/report.js';
import { benchDatabase } from '../search/database.js';

const originals = Number(arg('originals', '400'));
const catalogSize = Number(arg('catalog', '10000'));
const plantedShare = Number(arg('planted', '0.05'));
const scaleSize = Number(arg('vectors', '100000'));
const backend = arg('backend', 'postgres') as 'postgres' | 'pglite';
const parts = new Set(arg('parts', 'threshold,catalog,scale').split(','));
const PERTURBATIONS: Perturbation[] = ['resize', 'recompress', 'crop'];
const CANDIDATES = [0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99];
const log = createLogger('warn');

const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
printMachine();

/** A generated product photo: 2–4 shapes in random colours and places on a random light ground. */
async function photo(i: number, size = 128): Promise<Buffer> {
  const r = seededRandom(1000 + i);
  const u = r.next;
  const hex = (lo: number) =>
    `#${[0, 1, 2]
      .map(() =>
        Math.floor(lo + u() * (255 - lo))
          .toString(16)
          .padStart(2, '0'),
      )
      .join('')}`;
  const shapes = 2 + Math.floor(u() * 3);
  let body = '';
  for (let s = 0; s < shapes; s++) {
    const x = u() * size;
    const y = u() * size;
    const w = size * (0.15 + 0.35 * u());
    const fill = hex(0);
    const kind = Math.floor(u() * 3);
    body +=
      kind === 0
        ? `<circle cx="${x}" cy="${y}" r="${w / 2}" fill="${fill}"/>`
        : kind === 1
          ? `<rect x="${x - w / 2}" y="${y - w / 2}" width="${w}" height="${w * (0.5 + u())}" fill="${fill}" transform="rotate(${u() * 90} ${x} ${y})"/>`
          : `<polygon points="${x},${y - w / 2} ${x + w / 2},${y + w / 2} ${x - w / 2},${y + w / 2}" fill="${fill}"/>`;
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="${hex(170)}"/>${body}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

async function embedAll(embedder: Embedder, images: Buffer[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = 0; i < images.length; i += 64) {
    const pixels = await Promise.all(images.slice(i, i + 64).map((b) => decodeForModel(b, DEFAULT_IMAGE_LIMITS)));
    out.push(...(await embedder.embedImages(pixels)));
  }
  return out;
}

const f4 = (x: number) => x.toFixed(4);
const f3 = (x: number) => x.toFixed(3);

const cos = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

const modelDirArg = arg('model-dir', '');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-dup-bench-'));
const modelDir = modelDirArg || path.join(tmp, 'model');
if (!modelDirArg) await writeTinyModel(modelDir, { dimension: 64, modelId: 'vps/tiny-dup-bench' });
const embedder = await createEmbedder(
  {
    modelDir,
    provider: 'cpu',
    workers: 1,
    intraOpThreads: os.availableParallelism(),
    maxBatch: 32,
    maxWaitMs: 2,
    // The generated models carry no calibration; sigmoid(cos) keeps the tagging run's probabilities defined.
    calibration: { logitScale: 0, logitBias: 0 },
  },
  log,
);
const dim = embedder.info().dimension;
console.log(`model: ${modelDirArg ? modelDir : 'the tiny test model (generated)'}, ${dim}-d`);

if (parts.has('threshold')) {
  const t0 = process.hrtime.bigint();
  const base = await Promise.all(Array.from({ length: originals }, (_, i) => photo(i, 256)));
  const baseVectors = await embedAll(embedder, base);
  const positives = new Map<Perturbation, number[]>();
  for (const p of PERTURBATIONS) {
    const copies = await embedAll(embedder, await Promise.all(base.map((b) => perturb(b, p))));
    positives.set(
      p,
      copies.map((v, i) => cos(v, baseVectors[i]!)),
    );
  }
  const nearestOther = baseVectors.map((v, i) => Math.max(...baseVectors.map((w, j) => (i === j ? -1 : cos(v, w)))));
  const all = [...positives.values()].flat();
  table(`Cosine of a photo and its perturbed copy (${originals} generated photos, ${(ms(t0) / 1000) | 0} s)`, [
    ...PERTURBATIONS.map((p) => {
      const xs = positives.get(p)!;
      return {
        pairs: `copy: ${p}`,
        min: f4(Math.min(...xs)),
        p1: f4(percentile(xs, 1)),
        p5: f4(percentile(xs, 5)),
        median: f4(percentile(xs, 50)),
        max: f4(Math.max(...xs)),
      };
    }),
    {
      pairs: 'nearest other photo',
      min: f4(Math.min(...nearestOther)),
      p1: f4(percentile(nearestOther, 1)),
      p5: f4(percentile(nearestOther, 5)),
      median: f4(percentile(nearestOther, 50)),
      max: f4(Math.max(...nearestOther)),
    },
  ]);
  table(
    'Candidate thresholds: recall over the copies, and photos whose nearest other photo passes (false duplicates)',
    CANDIDATES.map((t) => ({
      threshold: t.toFixed(2),
      'recall (all copies)': f3(all.filter((x) => x >= t).length / all.length),
      ...Object.fromEntries(PERTURBATIONS.map((p) => [`recall ${p}`, f3(positives.get(p)!.filter((x) => x >= t).length / originals)])),
      'false duplicates': f3(nearestOther.filter((x) => x >= t).length / originals),
    })),
  );
  console.log(`DEFAULT_DUPLICATE_THRESHOLD in src/db/duplicates.ts: ${DEFAULT_DUPLICATE_THRESHOLD}`);
}

/** Products, photo rows and whole-photo vectors as ingest leaves them (the bytes are not needed by the scan). */
async function storeCatalog(db: Kysely<DB>, modelId: string, vectors: Float32Array[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < vectors.length; i += 2000) {
    const chunk = vectors.slice(i, i + 2000);
    const skus = chunk.map((_, j) => `B-${i + j}`);
    const shas = skus.map((s) => createHash('sha256').update(s).digest('hex'));
    const rows = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category)
      SELECT s, s, 'bench' FROM unnest(${skus}::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n RETURNING id`.execute(db);
    const pids = rows.rows.map((r) => String(r.id));
    ids.push(...pids);
    await sql`
      WITH img AS (
        INSERT INTO product_images (product_id, sha256, format, width, height, original, thumbnail)
        SELECT p, sha, 'png', 128, 128, '\\x00'::bytea, '\\x00'::bytea FROM unnest(${pids}::bigint[], ${shas}::text[]) AS u(p, sha)
        RETURNING id, product_id, sha256)
      INSERT INTO product_embeddings (product_id, image_id, region, model_id, embedding, image_sha256)
      SELECT img.product_id, img.id, 0, ${modelId}, v.e::halfvec, img.sha256
      FROM img JOIN unnest(${pids}::bigint[], ${chunk.map((v) => vectorLiteral(v))}::text[]) AS v(p, e) ON v.p = img.product_id`.execute(
      db,
    );
  }
  return ids;
}

async function detection(label: string, vectors: Float32Array[], planted: Array<[number, number]>, modelId: string): Promise<void> {
  const { database, stop } = await benchDatabase(backend);
  try {
    const db = database.db;
    const model = await registerModel(db, { id: modelId, source: 'bench', variant: null, dimension: vectors[0]!.length });
    await dropModelIndex(db, model.id);
    let t0 = process.hrtime.bigint();
    const ids = await storeCatalog(db, model.id, vectors);
    const loadS = ms(t0) / 1000;
    t0 = process.hrtime.bigint();
    await ensureModelIndex(db, model);
    await sql`ANALYZE`.execute(db);
    const indexS = ms(t0) / 1000;
    const loadAtScan = load();
    t0 = process.hrtime.bigint();
    const scan = await scanDuplicates(db, model);
    const scanS = ms(t0) / 1000;
    const key = (a: string, b: string) => (BigInt(a) < BigInt(b) ? `${a}:${b}` : `${b}:${a}`);
    const plantedKeys = new Set(planted.map(([o, c]) => key(ids[o]!, ids[c]!)));
    const found = await sql<{ a: string; b: string }>`SELECT product_a::text AS a, product_b::text AS b FROM duplicate_pairs`.execute(db);
    const foundKeys = new Set(found.rows.map((r) => key(String(r.a), String(r.b))));
    const hits = [...foundKeys].filter((k) => plantedKeys.has(k)).length;
    // Precision and recall around the default (photos only: the scale part is about time): one scan at the
    // lowest candidate, its pairs filtered by score.
    if (label.startsWith('catalog')) {
      const low = await scanDuplicates(db, model, { threshold: CANDIDATES[0]! });
      const lowPairs = await sql<{
        a: string;
        b: string;
        score: number;
      }>`SELECT product_a::text AS a, product_b::text AS b, score FROM duplicate_pairs`.execute(db);
      table(
        `${label}: precision and recall of the pairs per threshold (one scan at ${CANDIDATES[0]}, ${(low.durationMs / 1000).toFixed(1)} s)`,
        CANDIDATES.map((t) => {
          const at = lowPairs.rows.filter((r) => Number(r.score) >= t).map((r) => key(String(r.a), String(r.b)));
          const h = at.filter((k) => plantedKeys.has(k)).length;
          return {
            threshold: t === scan.threshold ? `**${t.toFixed(2)}** (default)` : t.toFixed(2),
            pairs: at.length,
            precision: f3(at.length ? h / at.length : 1),
            recall: f3(h / planted.length),
          };
        }),
      );
    }
    // The plan of one k-NN probe: the model's HNSW index, not a scan of every vector.
    const d = sql.raw(String(model.dimension));
    const plan = await sql<{ 'QUERY PLAN': string }>`EXPLAIN SELECT e.product_id FROM product_embeddings e
      WHERE e.model_id = ${sql.lit(model.id)} AND e.region = 0 AND e.product_id <> 1
      ORDER BY e.embedding::halfvec(${d}) <=> (SELECT embedding FROM product_embeddings LIMIT 1)::halfvec(${d}) LIMIT 10`.execute(db);
    const usesIndex = plan.rows.some((r) => /hnsw/i.test(r['QUERY PLAN']));
    table(`${label}: duplicate detection at the default threshold ${scan.threshold} (${backend})`, [
      {
        products: vectors.length,
        planted: planted.length,
        'pairs found': foundKeys.size,
        precision: f3(foundKeys.size ? hits / foundKeys.size : 1),
        recall: f3(hits / planted.length),
        'load s': loadS,
        'index build s': indexS,
        'scan s': scanS,
        'k-NN probe uses HNSW': usesIndex ? 'yes' : 'NO',
        'load avg at scan': loadAtScan,
      },
    ]);
    if (label.startsWith('catalog')) {
      // Tagging throughput on the same catalog: the label texts once, then a dot product per product and label.
      const taxonomy = {
        attribute: 'colour',
        labels: ['red', 'orange', 'yellow', 'green', 'blue', 'purple', 'pink', 'black', 'brown', 'white'],
        template: 'a photo of {}',
        onlyMissing: false,
      };
      const job = await insertTagJob(db, { modelId: model.id, taxonomy });
      const claimed = (await claimReindexJob(db, job.id, 'bench', 3600))!;
      t0 = process.hrtime.bigint();
      await runTagging(
        { db, log, workerId: 'bench', batchSize: 256, throttleMs: 0, stopping: () => false, lost: () => false },
        claimed,
        embedder,
      );
      const tagS = ms(t0) / 1000;
      table(`Tagging throughput (${backend}, ${taxonomy.labels.length} labels, batches of 256 products)`, [
        { products: vectors.length, seconds: tagS, 'products/s': vectors.length / tagS, 'load avg': load() },
      ]);
    }
  } finally {
    await stop();
  }
}

if (parts.has('catalog')) {
  const t0 = process.hrtime.bigint();
  const base = await Promise.all(Array.from({ length: catalogSize }, (_, i) => photo(100_000 + i)));
  const nPlanted = Math.round(catalogSize * plantedShare);
  const step = Math.floor(catalogSize / nPlanted);
  const copies = await Promise.all(
    Array.from({ length: nPlanted }, (_, n) => perturb(base[n * step]!, PERTURBATIONS[n % PERTURBATIONS.length]!)),
  );
  const vectors = await embedAll(embedder, [...base, ...copies]);
  console.error(`[bench] ${vectors.length} photos generated and embedded in ${(ms(t0) / 1000).toFixed(0)} s`);
  const planted = Array.from({ length: nPlanted }, (_, n) => [n * step, catalogSize + n] as [number, number]);
  await detection('catalog of generated photos', vectors, planted, 'bench/dup-photos');
}

if (parts.has('scale')) {
  const space = embeddingLikeSpace({ dimension: 768, seed: 11, clusters: 256 });
  const nPlanted = Math.round(scaleSize * 0.05);
  const vectors: Float32Array[] = [];
  for (let i = 0; i < scaleSize - nPlanted; i++) vectors.push(space.vector(i));
  const planted: Array<[number, number]> = [];
  for (let n = 0; n < nPlanted; n++) {
    const o = n * 19;
    const r = seededRandom(7_000_000 + n);
    const v = vectors[o]!.map((x) => x + 0.0036 * r.normal());
    const norm = Math.hypot(...v);
    planted.push([o, vectors.length]);
    vectors.push(v.map((x) => x / norm));
  }
  await detection(`scale: ${scaleSize} embedding-like 768-d vectors`, vectors, planted, 'bench/dup-768');
}

await embedder.close();
await fs.rm(tmp, { recursive: true, force: true });
console.log(`load average at end: ${load()}`);
