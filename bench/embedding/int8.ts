/**
 * The int8 path (issue 12), all tables of one run on the SigLIP 2 B/16-224 tower (random weights):
 *
 *  1. end to end from 640×480 JPEGs (bytes → L2-normalised vectors): ours fp32, ours int8
 *     (vision_model_quantized.onnx) and transformers.js loading the same int8 file (dtype 'q8'),
 *     measured alternately (one rep of each in turn, medians); one image per call, one call with a batch,
 *     concurrent single-image calls; plus the raw tensor rate through the worker pool (no decode);
 *  2. fidelity: cosine fp32 vs int8 of the same photos (median, min), recall@10 of int8's top-10 against
 *     fp32's over a catalog (random weights are not trained ones: a trained model's embeddings spread
 *     differently, so these figures say that the quantized graph computes the same function, not how a
 *     trained model's ranking moves);
 *  3. memory: RSS added by one worker for each variant (fp32, int8, fp16), each in a fresh process, for the B/16 tower with
 *     the stand-in text tower and with a text tower of the real SigLIP 2 base's size (256k vocabulary).
 *
 *   npm run bench -- embedding-int8                          (or: npx tsx bench/embedding/int8.ts)
 *   npx tsx bench/embedding/int8.ts --reps 3 --catalog 200 --no-text-base    (quicker: no base-size text tower)
 *   npx tsx bench/embedding/int8.ts --reps 1 --catalog 20 --no-text-base     (does it run; figures meaningless)
 *
 * Every throughput row also gives CPU milliseconds per image (process.cpuUsage, all threads of this
 * process): on a shared machine wall-clock rates swing with the load, CPU time per image much less.
 *
 * The load average is printed first and last: a run that starts above 1.0 on a 2-core machine is not
 * quotable (rerun it on a quiet machine).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoProcessor, RawImage, SiglipVisionModel, env } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { embedImageBytes } from '../../src/images/embed.js';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../src/embedding/index.js';
import type { WorkerPool } from '../../src/embedding/pool.js';
import { writeSiglipVisionModel } from '../../scripts/models/siglip-vision.js';
import { arg } from '../lib/report.js';
import { ensureB16, loadLine, median, mib, photoJpegs, table } from './common.js';

const threads = availableParallelism();

/** Wall and CPU milliseconds (process.cpuUsage: every thread of this process) of one call. */
async function timed(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
}
const self = fileURLToPath(import.meta.url);

// ---- memory child: `int8.ts --memory-child <dir> <variant>` prints one JSON line ------------------------
if (process.argv[2] === '--memory-child') {
  const [dir, variant] = [process.argv[3]!, process.argv[4]!];
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const e = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, variant, workers: 1, intraOpThreads: threads });
  const jpegs = await photoJpegs(8, 640, 480, 3);
  await embedImageBytes(e, jpegs);
  await e.embedTexts(['red running shoes', 'a leather bag']);
  const steady = process.memoryUsage().rss;
  clearInterval(sampler);
  await e.close();
  console.log(JSON.stringify({ base: rss0, steady, peak: Math.max(peak, steady) }));
  process.exit(0);
}

console.log(`start: ${loadLine()}`);
const benchStarted = performance.now();
const reps = Number(arg('reps', '5'));
const catalogSize = Number(arg('catalog', '300'));
const B = Number(arg('batch', '8'));
const textBase = !process.argv.includes('--no-text-base');
const dir = await ensureB16();
const jpegs = await photoJpegs(B, 640, 480, 11);

const open = (variant: string): Promise<Embedder> =>
  createEmbedder({
    ...defaultEmbedderOptions(),
    modelDir: dir,
    variant,
    provider: 'cpu',
    intraOpThreads: threads,
    workers: 1,
    maxBatch: B,
  });
const fp32 = await open('fp32');
const int8 = await open('quantized');

env.allowRemoteModels = false;
env.localModelPath = dirname(dir) + '/';
const model = await SiglipVisionModel.from_pretrained(basename(dir), {
  dtype: 'q8', // onnx/vision_model_quantized.onnx: the same file as ours
  device: 'cpu',
  session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
} as never);
const processor = await AutoProcessor.from_pretrained(basename(dir));
const peer = async (bufs: Buffer[]) => {
  const imgs = await Promise.all(bufs.map((b) => RawImage.fromBlob(new Blob([new Uint8Array(b)]))));
  const out = (await model(await processor(imgs))) as { pooler_output: unknown };
  return out.pooler_output;
};
await peer([jpegs[0]!]); // warm-up, as ours warms up at start

// ---- 1. throughput ------------------------------------------------------------------------------------
type Engine = [string, (bufs: Buffer[]) => Promise<unknown>];
const engines: Engine[] = [
  ['ours fp32', (b) => embedImageBytes(fp32, b)],
  ['ours int8', (b) => embedImageBytes(int8, b)],
  ['transformers.js int8', peer],
];
const modes: [string, number, (f: Engine[1]) => Promise<unknown>][] = [
  [
    'one image per call, sequential',
    B,
    async (f) => {
      for (const j of jpegs) await f([j]);
    },
  ],
  [`one call with ${B} images`, B, (f) => f(jpegs)],
  [`${B} concurrent single-image calls`, B, (f) => Promise.all(jpegs.map((j) => f([j])))],
];
const rows: Record<string, string | number>[] = [];
for (const [mode, n, run] of modes) {
  const times = engines.map(() => [] as number[]);
  const cpus = engines.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [i, [, f]] of engines.entries()) {
      const t = await timed(() => run(f));
      times[i]!.push(t.wall);
      cpus[i]!.push(t.cpu);
    }
  }
  const rate = times.map((t) => (n * 1000) / median(t));
  const cpuPer = cpus.map((c) => median(c) / n);
  rows.push({
    mode,
    'ours fp32 img/s': rate[0]!,
    'ours int8 img/s': rate[1]!,
    'transformers.js int8 img/s': rate[2]!,
    'int8 / fp32': `${(rate[1]! / rate[0]!).toFixed(2)}×`,
    'ours int8 / transformers.js': `${(rate[1]! / rate[2]!).toFixed(2)}×`,
    'CPU ms/img fp32 / int8 / peer': cpuPer.map((c) => c.toFixed(0)).join(' / '),
    'per-rep ours/peer': times[1]!.map((t, i) => (times[2]![i]! / t).toFixed(2)).join(' '),
  });
}
table(`End to end from 640×480 JPEGs, SigLIP 2 B/16-224 (random weights), ${threads} threads, CPU, alternating, median of ${reps}`, rows);

// raw: tensors straight into the worker pool (no decode, no resize)
const pool = (e: Embedder) => (e as unknown as { pool: WorkerPool }).pool;
const S = 224;
const rawRows: Record<string, string | number>[] = [];
for (const b of [1, B]) {
  const data = new Float32Array(b * 3 * S * S).map(() => Math.random() * 2 - 1);
  const t = [[], []] as number[][];
  const c = [[], []] as number[][];
  for (let r = 0; r < reps; r++) {
    for (const [i, e] of [fp32, int8].entries()) {
      const x = await timed(() => pool(e).run('image', b, data.slice()));
      t[i]!.push(x.wall);
      c[i]!.push(x.cpu);
    }
  }
  const [a, q] = t.map((x) => (b * 1000) / median(x));
  const [ca, cq] = c.map((x) => median(x) / b);
  rawRows.push({
    batch: b,
    'fp32 img/s': a!,
    'int8 img/s': q!,
    'int8 / fp32': `${(q! / a!).toFixed(2)}×`,
    'CPU ms/img fp32': ca!,
    'CPU ms/img int8': cq!,
    'int8 / fp32 by CPU time': `${(ca! / cq!).toFixed(2)}×`,
  });
}
table('Raw tower throughput (tensors in, vectors out, through the worker pool)', rawRows);

// session options, on the int8 file in this thread (no worker, no batcher): what ours uses against the
// alternatives worth trying on a CPU (spinning intra-op threads, a lower optimisation level, no arena)
const sessionSets: [string, ort.InferenceSession.SessionOptions][] = [
  ['ours: all, sequential, no spinning', { graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } }],
  ['spinning threads', { graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '1' } } } }],
  ['graph optimisation "extended"', { graphOptimizationLevel: 'extended', extra: { session: { intra_op: { allow_spinning: '0' } } } }],
  [
    'dynamic_block_base 4',
    {
      graphOptimizationLevel: 'all',
      extra: { session: { intra_op: { allow_spinning: '0' }, dynamic_block_base: '4' } },
    },
  ],
  [
    'no CPU memory arena',
    { graphOptimizationLevel: 'all', enableCpuMemArena: false, extra: { session: { intra_op: { allow_spinning: '0' } } } },
  ],
];
const sessions = await Promise.all(
  sessionSets.map(([, o]) =>
    ort.InferenceSession.create(resolve(dir, 'onnx', 'vision_model_quantized.onnx'), {
      ...o,
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    }),
  ),
);
const optRows: Record<string, string | number>[] = [];
for (const b of [1, B]) {
  const feeds = {
    pixel_values: new ort.Tensor(
      'float32',
      new Float32Array(b * 3 * S * S).map(() => Math.random() * 2 - 1),
      [b, 3, S, S],
    ),
  };
  for (const s of sessions) await s.run(feeds);
  const t = sessions.map(() => [] as number[]);
  const c = sessions.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [i, s] of sessions.entries()) {
      const x = await timed(() => s.run(feeds));
      t[i]!.push(x.wall);
      c[i]!.push(x.cpu);
    }
  }
  sessionSets.forEach(([name], i) =>
    optRows.push({ batch: b, options: name, 'img/s': (b * 1000) / median(t[i]!), 'CPU ms/img': median(c[i]!) / b }),
  );
}
await Promise.all(sessions.map((s) => s.release()));
table('ONNX Runtime session options on the int8 B/16 tower (alternating, raw, this thread)', optRows);

// ---- 2. fidelity --------------------------------------------------------------------------------------
const catalog = await photoJpegs(catalogSize, 640, 480, 101);
const embedAll = async (e: Embedder) => {
  const out: Float32Array[] = [];
  for (let i = 0; i < catalog.length; i += B) out.push(...(await embedImageBytes(e, catalog.slice(i, i + B))));
  return out;
};
const va = await embedAll(fp32);
const vq = await embedAll(int8);
const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i]!, 0);
const cos = va.map((v, i) => dot(v, vq[i]!));
const topK = (vs: Float32Array[], q: number, k: number) =>
  vs
    .map((v, i) => [i, i === q ? -Infinity : dot(vs[q]!, v)] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([i]) => i);
let hits = 0;
for (let q = 0; q < va.length; q++) {
  const ref = new Set(topK(va, q, 10));
  hits += topK(vq, q, 10).filter((i) => ref.has(i)).length;
}
table('Fidelity of int8 to fp32 (same photos; random weights, not trained ones)', [
  {
    photos: catalog.length,
    'cosine median': median(cos).toFixed(5),
    'cosine min': Math.min(...cos).toFixed(5),
    'recall@10 (int8 top-10 vs fp32 top-10, every photo as query)': (hits / (10 * va.length)).toFixed(3),
    'fp32 neighbour cosine (median of top-1)': median(va.map((_, q) => dot(va[q]!, va[topK(va, q, 1)[0]!]!))).toFixed(4),
  },
]);
await Promise.all([fp32.close(), int8.close()]);

// ---- 3. memory ----------------------------------------------------------------------------------------
const memRows: Record<string, string | number>[] = [];
const measure = (label: string, d: string, variant: string) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--memory-child', d, variant], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    memRows.push({ model: label, variant, 'RSS added, steady (MiB)': `failed: ${r.stderr.slice(-200)}`, 'peak (MiB)': '' });
    return;
  }
  const m = JSON.parse(line) as { base: number; steady: number; peak: number };
  memRows.push({
    model: label,
    variant,
    'RSS added, steady (MiB)': Math.round(mib(m.steady - m.base)),
    'peak (MiB)': Math.round(mib(m.peak - m.base)),
  });
};
for (const v of ['fp32', 'quantized', 'fp16']) measure('B/16-224 vision + stand-in text tower', dir, v);
if (textBase) {
  const baseDir = resolve(process.env.BENCH_BASE_MODEL_DIR ?? 'models/siglip2-base-random');
  if (!['text_model_quantized.onnx', 'text_model_fp16.onnx'].every((f) => existsSync(resolve(baseDir, 'onnx', f)))) {
    console.error(`generating ${baseDir} (B/16 vision + base-size text tower, ~1.5 GB) …`);
    await writeSiglipVisionModel(baseDir, { textTower: 'base' });
  }
  for (const v of ['fp32', 'quantized', 'fp16']) measure('B/16-224 vision + base-size text (256k vocab)', baseDir, v);
}
table(`Memory: RSS one worker adds (both towers loaded, after 8 images and 2 texts), ${threads} threads`, memRows);
console.log(`end: ${loadLine()}; ${((performance.now() - benchStarted) / 1000).toFixed(0)} s in all`);
