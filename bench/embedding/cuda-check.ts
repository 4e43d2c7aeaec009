/**
 * CUDA path check, for a machine with an NVIDIA GPU (CUDA 12 + cuDNN 9) and onnxruntime-node installed
 * with its CUDA provider (ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node):
 *
 *   npx tsx bench/embedding/cuda-check.ts [modelDir]
 *
 * 1. `provider: 'cuda'` must initialise (else it prints why and exits 1);
 * 2. CUDA and CPU embeddings of the same images must agree (cosine ≥ 0.999);
 * 3. throughput for batch 1…64 on CUDA, and micro-batched throughput at concurrency 32, beside CPU batch 8.
 * Without a model directory argument it generates the compute-faithful B/16 tower (random weights).
 */
import { availableParallelism } from 'node:os';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../src/embedding/index.js';
import type { WorkerPool } from '../../src/embedding/pool.js';
import { cudaProviderInstalled } from '../../src/embedding/providers.js';
import { ensureB16, loadLine, median, photoJpegs, table } from './common.js';
import { embedImageBytes } from '../../src/images/embed.js';

const dir = process.argv[2] ?? (await ensureB16());
console.log(`CUDA provider library installed: ${cudaProviderInstalled()}`);
let gpu: Embedder;
try {
  gpu = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, provider: 'cuda', maxBatch: 32, maxWaitMs: 5 }, console);
} catch (err) {
  console.error(`CUDA path unavailable: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
const cpu = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, provider: 'cpu', intraOpThreads: availableParallelism() });
const info = gpu.info();
const jpegs = await photoJpegs(8, 640, 480, 5);
const [a, b] = [await embedImageBytes(gpu, jpegs), await embedImageBytes(cpu, jpegs)];
const cos = a.map((v, i) => v.reduce((s, x, k) => s + x * b[i]![k]!, 0));
console.log(`provider=${info.provider}; CUDA vs CPU cosine min ${Math.min(...cos).toFixed(5)}`);
if (Math.min(...cos) < 0.999) console.error('WARNING: CUDA and CPU embeddings disagree');

const S = info.imageSize;
const pool = (e: Embedder) => (e as unknown as { pool: WorkerPool }).pool;
const rows: Record<string, string | number>[] = [];
for (const [name, e, batches] of [
  ['cuda', gpu, [1, 8, 16, 32, 64]],
  ['cpu', cpu, [8]],
] as const) {
  for (const B of batches) {
    const t: number[] = [];
    for (let r = 0; r < (name === 'cuda' ? 10 : 2); r++) {
      const data = new Float32Array(B * 3 * S * S).map(() => Math.random() * 2 - 1);
      const t0 = performance.now();
      await pool(e).run('image', B, data);
      t.push(performance.now() - t0);
    }
    rows.push({ provider: name, batch: B, 'latency ms (median)': median(t), 'images/s': (B * 1000) / median(t) });
  }
}
const many = Array.from({ length: 128 }, (_, i) => jpegs[i % jpegs.length]!);
const t0 = performance.now();
await Promise.all(many.map((j) => embedImageBytes(gpu, [j])));
const e2e = (many.length * 1000) / (performance.now() - t0);
table(`CUDA check (${info.modelId}, ${S}×${S})`, rows);
console.log(`\nmicro-batched end-to-end on CUDA, concurrency 128 single-image calls from 640×480 JPEGs: ${e2e.toFixed(1)} images/s`);
console.log(loadLine());
await gpu.close();
await cpu.close();
