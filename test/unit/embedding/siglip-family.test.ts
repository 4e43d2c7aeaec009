/**
 * The SigLIP family's export layouts, loaded and served by the real engine (ONNX Runtime sessions in
 * worker threads) from generated compute-faithful graphs (scripts/models/):
 * - SigLIP v1 at 384 px with its tokenizer conventions (SiglipTokenizer: punctuation removed, </s> pad);
 * - SigLIP 2 NaFlex: patches at the image's own aspect ratio with pixel_attention_mask and
 *   spatial_shapes, outputs named image_embeds/text_embeds, weights in *.onnx_data, logit scale and bias
 *   in a side file.
 */
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSiglipVisionModel } from '../../../scripts/models/siglip-vision.js';
import { writeNaflexModel } from '../../../scripts/models/siglip2-naflex.js';
import { createEmbedder, type Embedder, type RgbPixels } from '../../../src/embedding/index.js';
import { loadModelDir } from '../../../src/embedding/model-dir.js';
import { cleanupDirs, dot, norm, tempDir } from './helpers.js';

const opts = (modelDir: string) => ({ modelDir, provider: 'cpu' as const, workers: 1, intraOpThreads: 1, maxBatch: 4, maxWaitMs: 2 });

/** A picture with structure: a coloured rectangle on a gradient, `w`×`h`. */
function picture(w: number, h: number, seed: number): RgbPixels {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inside = x > w * 0.3 && x < w * 0.7 && y > h * 0.2 && y < h * 0.6;
      data[i] = inside ? (seed * 53) % 256 : (x * 255) / w;
      data[i + 1] = inside ? (seed * 97) % 256 : (y * 255) / h;
      data[i + 2] = inside ? (seed * 31) % 256 : 128;
    }
  return { data, width: w, height: h };
}

afterAll(cleanupDirs);

describe('SigLIP v1, 384 px', () => {
  let e: Embedder;
  beforeAll(async () => {
    const dir = await tempDir('vps-v1-');
    await writeSiglipVisionModel(dir, {
      family: 'siglip',
      imageSize: 384,
      hidden: 64,
      layers: 1,
      heads: 2,
      mlp: 128,
      quantized: false,
      modelId: 'vps/siglip-v1-384-test',
    });
    e = await createEmbedder(opts(dir));
  }, 60_000);
  afterAll(() => e?.close());

  it('loads at 384×384 and embeds any image size', async () => {
    expect(e.inputSize()).toEqual({ width: 384, height: 384 });
    expect(e.info()).toMatchObject({ modelId: 'vps/siglip-v1-384-test', dimension: 64, imageSize: 384 });
    const [a, b] = await e.embedImages([picture(500, 300, 1), picture(200, 640, 2)]);
    expect(norm(a!)).toBeCloseTo(1, 5);
    expect(dot(a!, b!)).toBeLessThan(0.9999);
  });

  it('embeds text as SiglipTokenizer sees it: case and punctuation do not change the vector', async () => {
    const [a, b, c] = await e.embedTexts(['Red, leather   hand-bag!', 'red leather handbag', 'blue shoes']);
    expect(Array.from(a!)).toEqual(Array.from(b!));
    expect(Array.from(a!)).not.toEqual(Array.from(c!));
  });
});

describe('SigLIP 2 NaFlex', () => {
  let dir: string;
  let e: Embedder;
  beforeAll(async () => {
    dir = await tempDir('vps-naflex-');
    await writeNaflexModel(dir, { hidden: 64, layers: 1, heads: 2, mlp: 128, maxNumPatches: 64, modelId: 'vps/naflex-test' });
    e = await createEmbedder(opts(dir));
  }, 60_000);
  afterAll(() => e?.close());

  it('is the hub layout: external weights, embeds outputs, calibration in a side file', async () => {
    const files = await readdir(`${dir}/onnx`);
    expect(files.sort()).toEqual(['text_model.onnx', 'text_model.onnx_data', 'vision_model.onnx', 'vision_model.onnx_data']);
    const m = await loadModelDir(dir);
    expect(m.preprocess.naflex).toEqual({ patchSize: 16, maxNumPatches: 64 });
    expect(m.logitScale).toBeCloseTo(4.7);
    expect(m.logitBias).toBeCloseTo(-16.5);
    expect(e.info()).toMatchObject({ modelId: 'vps/naflex-test', dimension: 64 });
    expect(e.matchProbability(0.1)).toBeCloseTo(1 / (1 + Math.exp(-(0.1 * Math.exp(4.7) - 16.5))), 6);
  });

  it('embeds portrait and landscape images natively, batch-independent (padding is masked)', async () => {
    const portrait = picture(300, 900, 3);
    const landscape = picture(900, 300, 3);
    const [p, l] = await e.embedImages([portrait, landscape]);
    expect(norm(p!)).toBeCloseTo(1, 5);
    expect(dot(p!, l!)).toBeLessThan(0.9999); // not squashed to one square
    const [pAlone] = await e.embedImages([portrait]);
    const [lAlone] = await e.embedImages([landscape]);
    for (let i = 0; i < 64; i++) {
      expect(pAlone![i]).toBeCloseTo(p![i]!, 5);
      expect(lAlone![i]).toBeCloseTo(l![i]!, 5);
    }
    const [again] = await e.embedImages([picture(300, 900, 3)]);
    expect(Array.from(again!)).toEqual(Array.from(pAlone!));
  });

  it('embeds text through its text_embeds output', async () => {
    const [a, b] = await e.embedTexts(['Red Shoes', 'red shoes']);
    expect(norm(a!)).toBeCloseTo(1, 5);
    expect(Array.from(a!)).toEqual(Array.from(b!));
  });
});
