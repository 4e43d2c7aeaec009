import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder, defaultEmbedderOptions, type Embedder, type EmbedderOptions } from '../../../src/embedding/index.js';
import type { MicroBatcher } from '../../../src/embedding/batcher.js';
import type { WorkerPool } from '../../../src/embedding/pool.js';
import { cudaProviderInstalled } from '../../../src/embedding/providers.js';
import { writeSiglipVisionModel } from '../../../scripts/models/siglip-vision.js';
import { cleanupDirs, norm, quietLog, solid, tempDir, tinyModel } from './helpers.js';
import { embedImageBytes } from '../../../src/images/embed.js';

// Whether this install has onnxruntime-node's CUDA provider library: what `auto` may pick depends on it.
const cudaInstalled = cudaProviderInstalled() === true;

type Internals = { pool: WorkerPool; batcher: MicroBatcher<string, unknown, Float32Array> };
const internals = (e: Embedder) => e as unknown as Internals;

const opts = (modelDir: string, o: Partial<EmbedderOptions> = {}): EmbedderOptions => ({
  ...defaultEmbedderOptions(),
  modelDir,
  intraOpThreads: 1,
  ...o,
});

let tinyDir: string;
let slowDir: string;
beforeAll(async () => {
  tinyDir = await tinyModel({ dimension: 48 });
  // A reduced SigLIP-architecture tower: slow enough (hundreds of ms per batch) to observe a long run.
  slowDir = await tempDir('vps-slow-');
  await writeSiglipVisionModel(slowDir, { hidden: 384, heads: 6, layers: 6, mlp: 1536 });
});
afterAll(cleanupDirs);

describe('embedding engine (tiny model, real worker threads)', () => {
  let e: Embedder;
  const log = quietLog();
  beforeAll(async () => {
    e = await createEmbedder(opts(tinyDir, { maxBatch: 8, maxWaitMs: 2 }), log);
  });
  afterAll(() => e.close());

  it('reports what it runs, and logs why auto did not use CUDA', () => {
    const { provider, ...info } = e.info();
    expect(info).toEqual({
      modelId: 'vps/tiny-siglip-test',
      dimension: 48,
      imageSize: 32,
      variant: 'fp32', // auto, and the tiny model has only fp32 files
      workers: 1,
      intraOpThreads: 1,
      maxBatch: 8,
      maxWaitMs: 2,
    });
    const cudaWarned = log.lines.some((l) => l.level === 'warn' && JSON.stringify(l.args).includes('CUDA'));
    if (!cudaInstalled) {
      // No CUDA provider library: auto runs on CPU, and says so.
      expect(provider).toBe('cpu');
      expect(cudaWarned).toBe(true);
    } else {
      // A CUDA install: auto uses CUDA, or falls back to CPU (no GPU, no driver) and logs why.
      expect(['cuda', 'cpu']).toContain(provider);
      expect(cudaWarned).toBe(provider === 'cpu');
    }
  });

  it('embeds images: L2-normalised, deterministic, order-preserving, batch-independent', async () => {
    const red = await solid(64, 48, [220, 20, 20]);
    const blue = await solid(64, 48, [20, 20, 220]);
    const [r1, b1, r2] = await embedImageBytes(e, [red, blue, red]);
    expect(r1!.length).toBe(48);
    expect(norm(r1!)).toBeCloseTo(1, 5);
    expect([...r1!]).toEqual([...r2!]);
    expect([...r1!]).not.toEqual([...b1!]);
    const [solo] = await embedImageBytes(e, [blue]);
    solo!.forEach((v, i) => expect(v).toBeCloseTo(b1![i]!, 5));
  });

  it('embeds texts: L2-normalised, case-insensitive, distinct', async () => {
    const [a, b, c] = await e.embedTexts(['Red shoes', 'red shoes', 'blue bag']);
    expect(norm(a!)).toBeCloseTo(1, 5);
    expect([...a!]).toEqual([...b!]);
    expect([...a!]).not.toEqual([...c!]);
    await expect(e.embedTexts(['x'.repeat(5000)])).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it('rejects bad images with typed errors naming the index', async () => {
    const ok = await solid(10, 10, [1, 2, 3]);
    await expect(embedImageBytes(e, [ok, Buffer.from('nope')])).rejects.toMatchObject({ code: 'INVALID_IMAGE', details: { index: 1 } });
    // The byte limit is the decoder's (images/), applied before the embedder sees pixels.
    const small = await createEmbedder(opts(tinyDir), quietLog());
    try {
      await expect(embedImageBytes(small, [ok], { maxImageBytes: 50, maxImagePixels: 40_000_000 })).rejects.toMatchObject({
        code: 'IMAGE_TOO_LARGE',
        details: { index: 0 },
      });
    } finally {
      await small.close();
    }
  });

  it('micro-batches concurrent single-image calls', async () => {
    const imgs = await Promise.all(Array.from({ length: 40 }, (_, i) => solid(40, 40, [i * 6, 255 - i * 6, 128])));
    const before = { ...internals(e).batcher.stats };
    const out = await Promise.all(imgs.map((b) => embedImageBytes(e, [b])));
    const batches = internals(e).batcher.stats.batches - before.batches;
    expect(out).toHaveLength(40);
    expect(batches).toBeLessThan(40);
    expect(internals(e).batcher.stats.maxObservedBatch).toBeGreaterThan(1);
    expect(internals(e).batcher.stats.maxObservedBatch).toBeLessThanOrEqual(8);
  });
});

describe('embedding engine: model validation at load', () => {
  it('fails with MODEL_UNAVAILABLE naming a missing file', async () => {
    const { rm } = await import('node:fs/promises');
    const dir = await tinyModel();
    await rm(join(dir, 'onnx', 'text_model.onnx'));
    await expect(createEmbedder(opts(dir))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringContaining('onnx/text_model.onnx'),
    });
    await expect(createEmbedder(opts(join(dir, 'nope')))).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
  });

  it('selects ONNX variants by name and names the missing one', async () => {
    const { copyFile } = await import('node:fs/promises');
    const dir = await tinyModel();
    await expect(createEmbedder(opts(dir, { variant: 'quantized' }))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringContaining('onnx/vision_model_quantized.onnx'),
    });
    await copyFile(join(dir, 'onnx', 'vision_model.onnx'), join(dir, 'onnx', 'vision_model_q8.onnx'));
    await copyFile(join(dir, 'onnx', 'text_model.onnx'), join(dir, 'onnx', 'text_model_q8.onnx'));
    const e = await createEmbedder(opts(dir, { variant: 'q8' }));
    expect(e.info().modelId).toBe('vps/tiny-siglip-test@q8');
    await e.close();
  });

  it('rejects a dimension mismatch between config.json and the graph', async () => {
    const { readFile, writeFile } = await import('node:fs/promises');
    const dir = await tinyModel({ dimension: 64 });
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    cfg.vision_config.hidden_size = 32;
    cfg.text_config.projection_size = 32;
    await writeFile(join(dir, 'config.json'), JSON.stringify(cfg));
    await expect(createEmbedder(opts(dir))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/vision_model\.onnx.*pooler_output.*64.*32/),
    });
  });

  it('rejects graphs with the wrong tensor names', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { GraphBuilder, FLOAT } = await import('../../../scripts/models/onnx-builder.js');
    const dir = await tinyModel({ dimension: 8, imageSize: 8 });
    const g = new GraphBuilder('bad');
    const x = g.input('pixels', FLOAT, ['batch', 3, 8, 8]);
    g.op('ReduceMean', [x], { axes: [2, 3], keepdims: 0 }, 'features');
    g.output('features', FLOAT, ['batch', 3]);
    await writeFile(join(dir, 'onnx', 'vision_model.onnx'), g.encode());
    await expect(createEmbedder(opts(dir))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/vision_model\.onnx.*"pixel_values"/),
    });
  });

  it.skipIf(cudaInstalled)('explicit cuda fails clearly when its provider library is absent', async () => {
    await expect(createEmbedder(opts(tinyDir, { provider: 'cuda' }))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringContaining('ONNXRUNTIME_NODE_INSTALL=cuda12'),
    });
  });

  it('explicit webgpu fails clearly without an adapter', async () => {
    await expect(createEmbedder(opts(tinyDir, { provider: 'webgpu' }))).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
  });
});

describe('embedding engine: long inference and crashes', () => {
  it('keeps the main thread responsive during a long inference', async () => {
    const e = await createEmbedder(opts(slowDir, { maxBatch: 16, intraOpThreads: 2 }));
    try {
      const imgs = await Promise.all(Array.from({ length: 12 }, (_, i) => solid(224, 224, [i * 20, 100, 200 - i * 10])));
      const gaps: number[] = [];
      let last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }, 10);
      const t0 = performance.now();
      await embedImageBytes(e, imgs);
      const took = performance.now() - t0;
      clearInterval(timer);
      expect(took).toBeGreaterThan(150); // it really was a long inference…
      expect(gaps.length).toBeGreaterThan(took / 10 / 3); // …and the timer kept firing during it
      // blocked, the longest gap would span the whole inference; responsive, it stays a fraction of it
      expect(Math.max(...gaps)).toBeLessThan(Math.max(150, took / 3));
    } finally {
      await e.close();
    }
  });

  it('fails in-flight calls of a crashed worker with a clear error and replaces the worker', async () => {
    const log = quietLog();
    const e = await createEmbedder(opts(slowDir, { maxBatch: 8, maxWaitMs: 0 }), log);
    try {
      const imgs = await Promise.all(Array.from({ length: 8 }, (_, i) => solid(64, 64, [i * 30, 50, 50])));
      const pool = internals(e).pool;
      pool.crashForTest(0, true); // the worker dies on receiving this batch
      const inflight = embedImageBytes(e, imgs);
      await expect(inflight).rejects.toMatchObject({
        code: 'EMBEDDING_FAILED',
        message: expect.stringMatching(/worker crashed.*simulated worker crash/),
      });
      // the next call is served by the replacement worker
      const [v] = await embedImageBytes(e, [imgs[0]!]);
      expect(norm(v!)).toBeCloseTo(1, 4);
      expect(pool.restartCount()).toBe(1);
      expect(log.lines.some((l) => l.level === 'error')).toBe(true);
    } finally {
      await e.close();
    }
  });
});

describe('embedding engine: shutdown during inference', () => {
  it('close() rejects in-flight calls and lets the worker finish its native run (the process survives)', async () => {
    const e = await createEmbedder(opts(slowDir, { maxBatch: 8, maxWaitMs: 0 }));
    const imgs = await Promise.all(Array.from({ length: 8 }, (_, i) => solid(64, 64, [i * 30, 90, 10])));
    const inflight = embedImageBytes(e, imgs);
    inflight.catch(() => {});
    while (internals(e).pool.free() > 0) await new Promise((r) => setTimeout(r, 1));
    await e.close();
    await expect(inflight).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE', message: 'Embedder is closed' });
    await expect(e.embedTexts(['after close'])).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
  });
});

describe('embedding engine: a worker that cannot be replaced', () => {
  it('fails new calls with MODEL_UNAVAILABLE instead of hanging', async () => {
    const { rm } = await import('node:fs/promises');
    const dir = await tinyModel();
    const log = quietLog();
    const e = await createEmbedder(opts(dir), log);
    try {
      await rm(join(dir, 'onnx', 'vision_model.onnx'));
      internals(e).pool.crashForTest(0);
      while (internals(e).pool.alive()) await new Promise((r) => setTimeout(r, 5));
      await expect(e.embedTexts(['still there?'])).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
      expect(log.lines.some((l) => l.level === 'error' && JSON.stringify(l.args).includes('failed to restart'))).toBe(true);
    } finally {
      await e.close();
    }
  });
});

describe('worker entry under tsx (npm start path)', () => {
  it('starts and embeds when the app runs under tsx', async () => {
    const run = promisify(execFile);
    const script = join(import.meta.dirname, '..', '..', 'fixtures', 'embedding', 'tsx-smoke.ts');
    const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
    const { stdout } = await run(tsx, [script, tinyDir], { timeout: 60_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(out).toMatchObject({ dimension: 48, provider: 'cpu', norm: expect.closeTo(1, 4) });
  });
});
