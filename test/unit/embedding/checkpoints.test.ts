/**
 * The checkpoint forms the hub ships, loaded by the real engine (ONNX Runtime sessions in worker threads):
 * the JSON files are the hub's own (test/fixtures/models, written from the public sources; the generators
 * copy them), the graphs small random ones in the exports' layouts and tensor names. Each test names the
 * form and fails when the engine stops computing what transformers computes for it.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { combinedModelGraph, tinyTextGraph, tinyTokenizerJson } from '../../../scripts/models/common.js';
import { writeSiglipVisionModel } from '../../../scripts/models/siglip-vision.js';
import { writeNaflexModel } from '../../../scripts/models/siglip2-naflex.js';
import { KNOWN_CALIBRATIONS } from '../../../src/embedding/calibration.js';
import { createEmbedder, type EmbedderOptions, type RgbPixels } from '../../../src/embedding/index.js';
import { loadModelDir } from '../../../src/embedding/model-dir.js';
import { embedImageBytes } from '../../../src/images/embed.js';
import { cleanupDirs, dot, fromRaw, quietLog, tempDir, tinyModel } from './helpers.js';

const FIXTURES = new URL('../../fixtures/models/', import.meta.url).pathname;
const opts = (modelDir: string, extra: Partial<EmbedderOptions> = {}): EmbedderOptions => ({
  modelDir,
  provider: 'cpu',
  workers: 1,
  intraOpThreads: 1,
  maxBatch: 4,
  maxWaitMs: 2,
  variant: 'fp32',
  ...extra,
});

function picture(w: number, h: number, seed: number): RgbPixels {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (Math.sin(i * (0.013 + seed * 0.003)) * 0.5 + 0.5) * 255;
  return { data, width: w, height: h };
}

/** The published file, byte for byte, over the generated one. */
const usePublished = (family: string, dir: string, name = 'config.json') => copyFile(join(FIXTURES, family, name), join(dir, name));

afterAll(cleanupDirs);

describe('SigLIP 2 base-224 FixRes, as google/siglip2-base-patch16-224 publishes it', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vps-ckpt-b16-');
    await writeSiglipVisionModel(dir, { layers: 1 });
  }, 120_000);

  it('loads its short-form config.json verbatim, with the classes’ defaults for what it leaves out', async () => {
    await usePublished('siglip2-base-patch16-224', dir);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { vision_config: Record<string, unknown> };
    expect(config.vision_config).toEqual({ model_type: 'siglip_vision_model' }); // nothing else: all defaults
    const files = await loadModelDir(dir, 'fp32', 'cpu');
    expect(files.dimension).toBe(768);
    expect([files.preprocess.width, files.preprocess.height, files.preprocess.resample]).toEqual([224, 224, 2]);
    expect(files.textMaxLength).toBe(64); // Gemma's model_max_length is 10^30: the text tower's 64 positions
    const e = await createEmbedder(opts(dir));
    try {
      const [v] = await e.embedImages([picture(300, 200, 1)]);
      expect(v).toHaveLength(768);
      const [t] = await e.embedTexts(['a red bag']);
      expect(t).toHaveLength(768);
    } finally {
      await e.close();
    }
  });

  it('runs the _int8 files, whose patch Conv is a ConvInteger with signed weights, as transformers.js quantises them', async () => {
    const m = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'vision_model_int8.onnx')));
    const conv = m.graph!.node!.find((n) => n.opType === 'ConvInteger')!;
    const weight = m.graph!.initializer!.find((t) => t.name === conv.input![1])!;
    expect(weight.dataType).toBe(3); // INT8
    const q8 = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'vision_model_quantized.onnx')));
    const q8conv = q8.graph!.node!.find((n) => n.opType === 'ConvInteger')!;
    expect(q8.graph!.initializer!.find((t) => t.name === q8conv.input![1])!.dataType).toBe(2); // UINT8: q8 where a Conv is
    const fp32 = await createEmbedder(opts(dir));
    const int8 = await createEmbedder(opts(dir, { variant: 'int8' }));
    try {
      expect(int8.info().variant).toBe('int8');
      const images = [picture(224, 224, 2), picture(500, 300, 3)];
      const [a, b] = [await fp32.embedImages(images), await int8.embedImages(images)];
      for (let i = 0; i < a.length; i++) expect(dot(a[i]!, b[i]!)).toBeGreaterThan(0.98);
    } finally {
      await Promise.all([fp32.close(), int8.close()]);
    }
  });

  it('runs the _fp16 files with float32 inputs and outputs (keep_io_types) like fp32', async () => {
    const m = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'vision_model_fp16.onnx')));
    expect(m.graph!.input![0]!.type!.tensorType!.elemType).toBe(1); // float32 in
    const fp32 = await createEmbedder(opts(dir));
    const fp16 = await createEmbedder(opts(dir, { variant: 'fp16' }));
    try {
      const images = [await fromRaw(picture(320, 240, 4).data, 320, 240)];
      const [a, b] = [await embedImageBytes(fp32, images), await embedImageBytes(fp16, images)];
      expect(dot(a[0]!, b[0]!)).toBeGreaterThan(0.999);
    } finally {
      await Promise.all([fp32.close(), fp16.close()]);
    }
  });
});

describe('SigLIP base-384 (v1), as google/siglip-base-patch16-384 publishes it', () => {
  it('loads its short-form config.json verbatim and resizes BICUBIC, as its preprocessor_config.json says', async () => {
    const dir = await tempDir('vps-ckpt-v1-');
    await writeSiglipVisionModel(dir, { family: 'siglip', imageSize: 384, layers: 1 });
    await usePublished('siglip-base-patch16-384', dir);
    const files = await loadModelDir(dir, 'fp32', 'cpu');
    expect([files.dimension, files.preprocess.width, files.preprocess.resample]).toEqual([768, 384, 3]);
    expect(files.tokenizerConfig['tokenizer_class']).toBe('SiglipTokenizer');
    // the BICUBIC pixels reach the model: the same photo through BILINEAR gives another vector
    const e = await createEmbedder(opts(dir));
    const pp = JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pp, resample: 2 }));
    const bilinear = await createEmbedder(opts(dir));
    try {
      const img = picture(1000, 700, 5);
      const [a] = await e.embedImages([img]);
      const [b] = await bilinear.embedImages([img]);
      expect(dot(a!, b!)).toBeLessThan(0.999999);
    } finally {
      await Promise.all([e.close(), bilinear.close()]);
    }
  }, 120_000);
});

describe('SigLIP 2 NaFlex, as google/siglip2-base-patch16-naflex publishes it', () => {
  it('loads the published files (model_type siglip2, Siglip2ImageProcessor) in their short form', async () => {
    const dir = await tempDir('vps-ckpt-naflex-');
    await writeNaflexModel(dir, { hidden: 64, layers: 1, heads: 2, mlp: 128, maxNumPatches: 64 });
    const published = JSON.parse(
      await readFile(join(FIXTURES, 'siglip2-base-patch16-naflex', 'preprocessor_config.json'), 'utf8'),
    ) as object;
    const pp = JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8')) as object;
    expect(pp).toEqual({ ...published, max_num_patches: 64 }); // the published file, the patch budget ours
    const files = await loadModelDir(dir, 'fp32', 'cpu');
    expect(files.preprocess.naflex).toEqual({ patchSize: 16, maxNumPatches: 64 });
    expect(files.dimension).toBe(64);
  });
});

describe('a text tower that declares attention_mask (third-party exports)', () => {
  it('is fed the mask SigLIP was trained with (every position), so it computes what the tower without the input computes', async () => {
    const plain = await tinyModel();
    const masked = await tinyModel();
    const { vocabSize } = tinyTokenizerJson();
    // the tiny model's text tower (scripts/models/tiny-model.ts: hidden 32, dimension 64, seed 1234 + 1), with the input
    const graph = tinyTextGraph({ vocabSize, hidden: 32, dimension: 64, seed: 1235, attentionMask: true });
    await writeFile(join(masked, 'onnx', 'text_model.onnx'), graph.encode());
    const [a, b] = [await createEmbedder(opts(plain)), await createEmbedder(opts(masked))];
    try {
      const texts = ['red leather handbag', 'shoes'];
      const [va, vb] = [await a.embedTexts(texts), await b.embedTexts(texts)];
      for (let i = 0; i < texts.length; i++) expect(dot(va[i]!, vb[i]!)).toBeCloseTo(1, 6);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('calibration (matchProbability) for real checkpoints', () => {
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

  it('knows the default model’s published logit_scale and logit_bias by its repository id', async () => {
    // a snapshot in a hub cache names its repository, as the default model's first start finds it
    const cache = await tempDir('vps-ckpt-cal-');
    const dir = join(cache, 'models--onnx-community--siglip2-base-patch16-224-ONNX', 'snapshots', 'c'.repeat(40));
    await mkdir(dir, { recursive: true });
    const src = await tinyModel();
    for (const f of [
      'config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/vision_model.onnx',
      'onnx/text_model.onnx',
    ]) {
      await mkdir(join(dir, 'onnx'), { recursive: true });
      await copyFile(join(src, f), join(dir, f));
    }
    const log = quietLog();
    const e = await createEmbedder(opts(dir), log);
    try {
      expect(e.info().modelId).toBe('onnx-community/siglip2-base-patch16-224-ONNX');
      expect(e.matchProbability(0.1)).toBeCloseTo(sigmoid(0.1 * Math.exp(4.724453449249268) - 16.771724700927734), 10);
      expect(KNOWN_CALIBRATIONS['onnx-community/siglip2-base-patch16-224-ONNX']).toMatchObject({ logitScale: 4.724453449249268 });
    } finally {
      await e.close();
    }
  });

  it('reads them from the combined onnx/model.onnx where the directory has it (the exponentiated, folded constants)', async () => {
    const dir = await tinyModel();
    const { vocabSize } = tinyTokenizerJson();
    await writeFile(
      join(dir, 'onnx', 'model.onnx'),
      combinedModelGraph({ logitScaleExp: 112.66889953613281, logitBias: -16.771724700927734, imageSize: 32, vocabSize }).encode(),
    );
    const files = await loadModelDir(dir, 'fp32', 'cpu');
    expect(files.calibration).toEqual({ source: 'onnx/model.onnx' });
    expect(files.logitScale).toBeCloseTo(Math.log(112.66889953613281), 6);
    expect(files.logitBias).toBeCloseTo(-16.771724700927734, 6);
  });

  it('takes the user’s setting ahead of the directory, and is null with a logged reason where nothing says them', async () => {
    const dir = await tinyModel();
    expect((await loadModelDir(dir, 'fp32', 'cpu', { calibration: { logitScale: 3, logitBias: -5 } })).logitScale).toBe(3);
    const log = quietLog();
    const e = await createEmbedder(opts(dir), log);
    try {
      expect(e.matchProbability(0.3)).toBeNull();
      const warned = log.lines.filter((l) => l.level === 'warn').map((l) => String(l.args.at(-1)));
      expect(warned.some((w) => /matchProbability is null: no logit_scale\/logit_bias for vps\/tiny-siglip-test/.test(w))).toBe(true);
    } finally {
      await e.close();
    }
  });
});
