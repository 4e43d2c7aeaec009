/**
 * Engine throughput on the compute-faithful SigLIP 2 B/16-224 tower (random weights):
 *  1. raw batch throughput/latency (batch 1…32 × intra-op threads), straight through the worker pool;
 *  2. micro-batched end-to-end throughput at concurrency 1/8/32 (single-image calls from JPEG bytes) as a
 *     share of the best raw batch throughput, with the main thread's event-loop delay p99;
 *  3. peak memory of one worker.
 *
 *   npx tsx bench/embedding/throughput.ts            (BENCH_QUICK=1 for a shorter sweep)
 */
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../src/embedding/index.js';
import type { WorkerPool } from '../../src/embedding/pool.js';
import { ensureB16, median, mib, photoJpegs, table, loadLine } from './common.js';
import { embedImageBytes } from '../../src/images/embed.js';

const quick = process.env.BENCH_QUICK === '1';
const cores = availableParallelism();
const dir = await ensureB16();
const pool = (e: Embedder) => (e as unknown as { pool: WorkerPool }).pool;
const S = 224;
const rand = (B: number) => {
  const d = new Float32Array(B * 3 * S * S);
  for (let i = 0; i < d.length; i++) d[i] = Math.random() * 2 - 1;
  return d;
};

// ---- 3 (first, in a clean process): memory of one worker --------------------------------------------
const rss0 = process.memoryUsage().rss;
let peak = rss0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
const memE = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, intraOpThreads: cores, workers: 1 });
const rssLoaded = process.memoryUsage().rss;
await pool(memE).run('image', 16, rand(16));
const workerHeap = (await pool(memE).memory())[0]!;
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss);
await memE.close();
const memRows = [
  {
    measure: 'process RSS growth after start (sessions loaded + warm-up), MiB',
    value: Math.round(mib(rssLoaded - rss0)),
  },
  { measure: 'peak RSS growth during a batch of 16, MiB', value: Math.round(mib(peak - rss0)) },
  { measure: 'worker V8 heap used, MiB', value: Math.round(mib(workerHeap.heapUsed)) },
];

// ---- 1: raw batch throughput --------------------------------------------------------------------------
const batches = quick ? [1, 8] : [1, 2, 4, 8, 16, 32];
const threadSet = [...new Set([1, cores])];
const raw: Record<string, string | number>[] = [];
let bestRaw = 0;
let bestRawAt = '';
let bestRawCpu = Infinity; // lowest CPU ms per image in the sweep (load-independent efficiency)
for (const threads of threadSet) {
  const e = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, intraOpThreads: threads, workers: 1 });
  const sweep = threads === cores ? batches : batches.filter((b) => b === 1 || b === 8);
  // rounds interleave the batch sizes, so that background load on a shared machine spreads over all of them
  const lat = new Map<number, number[]>(sweep.map((b) => [b, []]));
  const cpu = new Map<number, number[]>(sweep.map((b) => [b, []]));
  const rounds = quick ? 2 : 3;
  for (let r = 0; r < rounds; r++) {
    for (const B of sweep) {
      if (B >= 32 && r >= 2) continue;
      const data = rand(B);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await pool(e).run('image', B, data);
      lat.get(B)!.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.get(B)!.push((c.user + c.system) / 1000);
    }
  }
  for (const B of sweep) {
    const ms = median(lat.get(B)!);
    const ips = (B * 1000) / ms;
    if (threads === cores && ips > bestRaw) {
      bestRaw = ips;
      bestRawAt = `batch ${B}`;
    }
    if (threads === cores) bestRawCpu = Math.min(bestRawCpu, median(cpu.get(B)!) / B);
    raw.push({
      threads,
      batch: B,
      'latency ms (median)': Math.round(ms),
      'images/s': ips,
      'CPU ms per image': Math.round(median(cpu.get(B)!) / B),
      runs: lat.get(B)!.length,
    });
  }
  await e.close();
}

// ---- 2: micro-batched end-to-end at concurrency 1/8/32 -----------------------------------------------
const jpegs = await photoJpegs(8, 320, 320, 7);
const conc: Record<string, string | number>[] = [];
const e = await createEmbedder({
  ...defaultEmbedderOptions(),
  modelDir: dir,
  intraOpThreads: cores,
  workers: 1,
  maxBatch: 16,
  maxWaitMs: 5,
});
const stats = (e as unknown as { batcher: { stats: { batches: number; items: number } } }).batcher.stats;
for (const c of quick ? [1, 8] : [1, 8, 32]) {
  const total = c === 1 ? 6 : c === 8 ? 32 : 64;
  // raw batch-16 throughput measured right before this level, on the same engine (the machine is shared)
  const r0 = performance.now();
  await pool(e).run('image', 16, rand(16));
  const adjacentRaw = (16 * 1000) / (performance.now() - r0);
  let next = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  const before = { ...stats };
  const lat: number[] = [];
  h.enable();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < total) {
        const i = next++;
        const s = performance.now();
        await embedImageBytes(e, [jpegs[i % jpegs.length]!]);
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpuUsed = process.cpuUsage(c0);
  const cpuPerImage = (cpuUsed.user + cpuUsed.system) / 1000 / total;
  h.disable();
  const ips = total / secs;
  conc.push({
    concurrency: c,
    requests: total,
    'images/s': ips,
    'share of best raw (sweep)': `${Math.round((100 * ips) / bestRaw)}%`,
    'adjacent raw b16 images/s': adjacentRaw,
    'share of adjacent raw': `${Math.round((100 * ips) / adjacentRaw)}%`,
    'CPU ms per image (all threads)': Math.round(cpuPerImage),
    'CPU efficiency vs best raw': `${Math.round((100 * bestRawCpu) / cpuPerImage)}%`,
    'mean batch': (stats.items - before.items) / (stats.batches - before.batches),
    'latency p50 ms': Math.round(median(lat)),
    'event-loop delay p99 ms': h.percentile(99) / 1e6,
    'event-loop delay max ms': h.max / 1e6,
  });
}
await e.close();

console.log(`\nSigLIP 2 B/16-224 (random weights), ${cores} cores, onnxruntime-node CPU EP, 1 worker`);
table('Raw batch throughput (worker pool, preprocessed tensors)', raw);
console.log(`\nbest raw: ${bestRaw.toFixed(2)} images/s at ${bestRawAt}, ${cores} threads`);
table('Micro-batched end-to-end (single-image calls from 320×320 JPEGs; maxBatch 16, maxWait 5 ms)', conc);
table('Memory (one worker, B/16 vision + small text tower)', memRows);
console.log(loadLine());
