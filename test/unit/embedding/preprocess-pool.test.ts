/**
 * Preprocessing off the main thread (preprocess-pool.ts): the worker's tensors are the inline ones, bit
 * for bit (FixRes and NaFlex), the caller's pixels stay usable, a crash fails only that worker's images
 * and the next image starts a new one, and the engine hands large images to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../../src/embedding/index.js';
import { parsePreprocessorConfig } from '../../../src/embedding/model-dir.js';
import { naflexPreprocess, type NaflexInput } from '../../../src/embedding/naflex.js';
import { INLINE_MAX_PIXELS, PreprocessPool } from '../../../src/embedding/preprocess-pool.js';
import { preprocessRgb } from '../../../src/embedding/preprocess.js';
import { cleanupDirs, dot, tinyModel } from './helpers.js';

const fixres = parsePreprocessorConfig({ size: { height: 224, width: 224 }, resample: 2 });
const naflex = parsePreprocessorConfig({ image_processor_type: 'Siglip2ImageProcessor', patch_size: 16, max_num_patches: 64, resample: 2 });

function image(width: number, height: number, seed: number) {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) data[i] = (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
  return { data, width, height };
}

afterAll(cleanupDirs);

/** Bitwise equality of two typed arrays (vitest's toEqual walks 150k elements one by one: seconds each). */
const same = (a: unknown, b: ArrayBufferView) => {
  const x = a as ArrayBufferView;
  return (
    x.byteLength === b.byteLength &&
    Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  );
};

describe('PreprocessPool', () => {
  it('gives the inline tensors exactly, for many images in flight on two workers', async () => {
    const pool = new PreprocessPool(fixres, 2);
    try {
      const imgs = [image(640, 480, 1), image(1000, 333, 2), image(400, 900, 3), image(641, 479, 4), image(330, 330, 5)];
      const before = imgs.map((i) => i.data.slice());
      const out = await Promise.all(imgs.map((i) => pool.run(i)));
      expect(pool.offloaded).toBe(imgs.length);
      for (const [k, img] of imgs.entries()) {
        expect(same(out[k], preprocessRgb(img, fixres))).toBe(true);
        expect(same(img.data, before[k]!)).toBe(true); // the caller's pixels are neither detached nor changed
      }
    } finally {
      await pool.close();
    }
  });

  it('takes a Buffer view (what sharp returns) without detaching it', async () => {
    const pool = new PreprocessPool(fixres, 1);
    try {
      const img = image(500, 400, 7);
      const big = Buffer.alloc(img.data.length + 64);
      big.set(img.data, 32);
      const view = big.subarray(32, 32 + img.data.length);
      const out = await pool.run({ data: view, width: 500, height: 400 });
      expect(same(out, preprocessRgb(img, fixres))).toBe(true);
      expect(view.length).toBe(img.data.length);
      expect(big.buffer.byteLength).toBeGreaterThan(0);
    } finally {
      await pool.close();
    }
  });

  it('does NaFlex patching on the worker with the inline result', async () => {
    const pool = new PreprocessPool(naflex, 1);
    try {
      const img = image(700, 350, 9);
      const got = (await pool.run(img)) as NaflexInput;
      const want = naflexPreprocess(img, naflex, naflex.naflex!);
      expect(pool.offloaded).toBe(1);
      expect([got.rows, got.cols]).toEqual([want.rows, want.cols]);
      expect(same(got.mask, want.mask)).toBe(true);
      expect(same(got.pixels, want.pixels)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('keeps small images inline (no thread started)', async () => {
    const pool = new PreprocessPool(fixres, 1);
    const side = Math.floor(Math.sqrt(INLINE_MAX_PIXELS));
    const img = image(side, side, 11);
    expect(same(await pool.run(img), preprocessRgb(img, fixres))).toBe(true);
    expect(pool.offloaded).toBe(0);
    await pool.close();
  });

  it('fails the images of a crashed worker with EMBEDDING_FAILED and starts a new one for the next', async () => {
    const pool = new PreprocessPool(fixres, 1);
    try {
      await pool.run(image(640, 480, 1)); // the worker is up
      pool.crashForTest(); // the worker dies on receiving the next image, so that image is in flight
      const inFlight = pool.run(image(640, 480, 2));
      await expect(inFlight).rejects.toMatchObject({ code: 'EMBEDDING_FAILED' });
      const img = image(640, 480, 3);
      expect(same(await pool.run(img), preprocessRgb(img, fixres))).toBe(true);
    } finally {
      await pool.close();
    }
  });
});

describe('engine: large images are preprocessed off the main thread', () => {
  let e: Embedder;
  beforeAll(async () => {
    e = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: await tinyModel({ dimension: 32 }), intraOpThreads: 1 });
  });
  afterAll(() => e.close());

  it('embeds a 1200×900 image on the preprocessing worker the same as its inline-sized equivalent', async () => {
    const internals = e as unknown as { preprocessPool: PreprocessPool };
    const big = image(1200, 900, 5);
    const [v] = await e.embedImages([big]);
    expect(internals.preprocessPool.offloaded).toBe(1);
    // the same pixels preprocessed inline, fed through the same engine, give the same vector
    const spec = (e as unknown as { files: { preprocess: typeof fixres } }).files.preprocess;
    const tensor = preprocessRgb(big, spec);
    const batcher = (e as unknown as { batcher: { submit(k: string, p: Float32Array): Promise<Float32Array> } }).batcher;
    const w = await batcher.submit('image', tensor);
    expect(dot(v!, w)).toBeCloseTo(1, 6);
  });
});
