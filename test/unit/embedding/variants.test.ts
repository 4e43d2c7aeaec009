/**
 * The int8 variants the generator writes (*_quantized.onnx, ONNX Runtime's dynamic-quantization form) and
 * EMBEDDING_VARIANT=auto: real ONNX Runtime sessions on a reduced SigLIP-architecture tower.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder, defaultEmbedderOptions, type EmbedderOptions } from '../../../src/embedding/index.js';
import { loadModelDir } from '../../../src/embedding/model-dir.js';
import { expectedProvider } from '../../../src/embedding/providers.js';
import { pickAutoVariant, selectFiles } from '../../../src/hub/variants.js';
import { embedImageBytes } from '../../../src/images/embed.js';
import { writeSiglipVisionModel } from '../../../scripts/models/siglip-vision.js';
import { cleanupDirs, fromRaw, quietLog, tempDir, tinyModel } from './helpers.js';

const opts = (modelDir: string, o: Partial<EmbedderOptions> = {}): EmbedderOptions => ({
  ...defaultEmbedderOptions(),
  modelDir,
  provider: 'cpu',
  intraOpThreads: 1,
  ...o,
});

let dir: string;
beforeAll(async () => {
  dir = await tempDir('vps-q-');
  await writeSiglipVisionModel(dir, { imageSize: 64, patchSize: 16, hidden: 128, heads: 4, layers: 2, mlp: 512 });
});
afterAll(cleanupDirs);

const opTypes = async (path: string) => {
  const m = onnxProto.onnx.ModelProto.decode(await readFile(path));
  return new Set((m.graph?.node ?? []).map((n) => n.opType));
};

describe('int8 variants (*_quantized.onnx)', () => {
  it('are written beside fp32 in the dynamic-quantization form of the hub exports', async () => {
    const ops = await opTypes(join(dir, 'onnx', 'vision_model_quantized.onnx'));
    for (const op of ['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul']) expect(ops).toContain(op);
    // every weight MatMul was rewritten; only attention's activation × activation MatMuls stay float
    const m = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'vision_model_quantized.onnx')));
    const inits = new Set((m.graph?.initializer ?? []).map((t) => t.name));
    const floatWeightMatMuls = (m.graph?.node ?? []).filter((n) => n.opType === 'MatMul' && inits.has(n.input![1]));
    expect(floatWeightMatMuls).toHaveLength(0);
    expect(await opTypes(join(dir, 'onnx', 'text_model_quantized.onnx'))).toContain('DequantizeLinear'); // int8 token table
    const size = async (f: string) => (await readFile(join(dir, 'onnx', f))).length;
    expect(await size('vision_model_quantized.onnx')).toBeLessThan((await size('vision_model.onnx')) * 0.4);
  });

  it('embed like fp32: cosine ≥ 0.98 per image and text', { timeout: 60_000 }, async () => {
    const images = await Promise.all(
      Array.from({ length: 6 }, (_, k) => {
        const w = 80,
          h = 60;
        const raw = new Uint8Array(w * h * 3);
        for (let i = 0; i < raw.length; i++) raw[i] = (Math.sin(i * (0.01 + k * 0.003)) * 0.5 + 0.5) * 255;
        return fromRaw(raw, w, h, 'png');
      }),
    );
    const fp32 = await createEmbedder(opts(dir, { variant: 'fp32' }));
    const int8 = await createEmbedder(opts(dir, { variant: 'quantized' }));
    try {
      expect(int8.info().modelId).toBe(`${fp32.info().modelId}@quantized`);
      const [a, b] = [await embedImageBytes(fp32, images), await embedImageBytes(int8, images)];
      const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i]!, 0);
      // this 128-wide stand-in quantizes coarser than the B/16 tower (bench embedding-int8 measures that one)
      for (let i = 0; i < a.length; i++) expect(dot(a[i]!, b[i]!)).toBeGreaterThan(0.98);
      const [ta, tb] = [await fp32.embedTexts(['red shoes']), await int8.embedTexts(['red shoes'])];
      expect(dot(ta[0]!, tb[0]!)).toBeGreaterThan(0.98);
    } finally {
      await Promise.all([fp32.close(), int8.close()]);
    }
  });
});

describe('fp16 variants (*_fp16.onnx)', () => {
  it('are written beside fp32 in half precision, inputs and outputs float32 (keep_io_types) as transformers.js writes them', async () => {
    const FLOAT = 1;
    const m = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'vision_model_fp16.onnx')));
    const elem = (v: { type?: { tensorType?: { elemType?: number | null } | null } | null }) => v.type?.tensorType?.elemType;
    expect(m.graph?.input?.map(elem)).toEqual([FLOAT]);
    expect(new Set(m.graph?.output?.map(elem))).toEqual(new Set([FLOAT]));
    // the graph casts its input to half first and its outputs back last
    expect(m.graph?.node?.[0]?.opType).toBe('Cast');
    expect(m.graph?.node?.at(-1)?.opType).toBe('Cast');
    // no float32 weight is left
    expect((m.graph?.initializer ?? []).filter((t) => t.dataType === 1)).toHaveLength(0);
    const t = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'text_model_fp16.onnx')));
    expect(t.graph?.input?.map(elem)).toEqual([7]); // input_ids stays int64
    const size = async (f: string) => (await readFile(join(dir, 'onnx', f))).length;
    expect(await size('vision_model_fp16.onnx')).toBeLessThan((await size('vision_model.onnx')) * 0.55);
  });

  // On Node 24 (a global Float16Array) this also covers the worker's halfTensor/halfOutput: without them
  // the binding read the float16 input as empty ("not enough space: expected …, got 0").
  it('load (CPU runs fp16 graphs too) and embed like fp32: cosine ≥ 0.999 per image and text', { timeout: 60_000 }, async () => {
    const images = await Promise.all(
      Array.from({ length: 4 }, (_, k) => {
        const w = 90,
          h = 70;
        const raw = new Uint8Array(w * h * 3);
        for (let i = 0; i < raw.length; i++) raw[i] = (Math.cos(i * (0.02 + k * 0.005)) * 0.5 + 0.5) * 255;
        return fromRaw(raw, w, h, 'png');
      }),
    );
    const fp32 = await createEmbedder(opts(dir, { variant: 'fp32' }));
    const fp16 = await createEmbedder(opts(dir, { variant: 'fp16' }));
    try {
      expect(fp16.info().variant).toBe('fp16');
      expect(fp16.info().modelId).toBe(`${fp32.info().modelId}@fp16`);
      const [a, b] = [await embedImageBytes(fp32, images), await embedImageBytes(fp16, images)];
      const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i]!, 0);
      for (let i = 0; i < a.length; i++) {
        expect(Math.abs(dot(b[i]!, b[i]!) - 1)).toBeLessThan(1e-3); // normalised in float32 after the half output
        expect(dot(a[i]!, b[i]!)).toBeGreaterThan(0.999);
      }
      const [ta, tb] = [await fp32.embedTexts(['red shoes']), await fp16.embedTexts(['red shoes'])];
      expect(dot(ta[0]!, tb[0]!)).toBeGreaterThan(0.999);
    } finally {
      await Promise.all([fp32.close(), fp16.close()]);
    }
  });

  it('are what auto opens on CUDA (and int8 on CPU) in a generated directory', async () => {
    const files = await loadModelDir(dir, 'auto', 'auto');
    expect(files.autoVariants?.cuda.variant).toBe('fp16');
    expect(files.autoVariants?.cuda.visionModelPath).toMatch(/vision_model_fp16\.onnx$/);
    expect(files.autoVariants?.cuda.textModelPath).toMatch(/text_model_fp16\.onnx$/);
    expect(files.autoVariants?.cpu.variant).toBe('quantized');
    expect((await loadModelDir(dir, 'auto', 'cuda')).visionModelPath).toMatch(/vision_model_fp16\.onnx$/);
  });
});

describe('EMBEDDING_VARIANT=auto', () => {
  it('is the default, picks int8 on CPU when present, and logs the choice', async () => {
    expect(defaultEmbedderOptions().variant).toBe('auto');
    const log = quietLog();
    const e = await createEmbedder(opts(dir), log);
    try {
      expect(e.info().variant).toBe('quantized');
      expect(e.info().modelId).toMatch(/@quantized$/);
      expect(log.lines.some((l) => l.level === 'info' && JSON.stringify(l.args).includes('vision_model_quantized.onnx'))).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('falls back to fp32 where no faster variant is present; an explicit variant wins', async () => {
    const tiny = await tinyModel();
    expect((await loadModelDir(tiny, 'auto', 'cpu')).variant).toBeUndefined();
    expect((await loadModelDir(dir, 'fp32', 'cpu')).visionModelPath).toMatch(/vision_model\.onnx$/);
    expect((await loadModelDir(dir, 'auto', 'cpu')).visionModelPath).toMatch(/vision_model_quantized\.onnx$/);
  });

  it('prefers int8 on CPU, fp16 on CUDA, fp32 otherwise', () => {
    const all = (v: string) => ['fp32', 'fp16', 'quantized'].includes(v);
    expect(pickAutoVariant('cpu', all)).toBe('quantized');
    expect(pickAutoVariant('cuda', all)).toBe('fp16');
    expect(pickAutoVariant('webgpu', all)).toBe('fp32');
    expect(pickAutoVariant('cuda', (v) => v === 'quantized')).toBe('quantized'); // whatever is there
    expect(expectedProvider('auto', () => false)).toBe('cpu');
    expect(expectedProvider('auto', () => true)).toBe('cuda');
    expect(expectedProvider('webgpu')).toBe('webgpu');
  });

  it('model fetch downloads only the chosen variant’s graphs', () => {
    const listing = [
      'config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/vision_model.onnx',
      'onnx/text_model.onnx',
      'onnx/vision_model_fp16.onnx',
      'onnx/text_model_fp16.onnx',
      'onnx/vision_model_quantized.onnx',
      'onnx/text_model_quantized.onnx',
    ].map((path) => ({ path, size: 1 }));
    const onnx = (provider: 'cpu' | 'cuda') =>
      selectFiles(listing, 'auto', provider)
        .map((f) => f.path)
        .filter((p) => p.startsWith('onnx/'));
    expect(onnx('cpu')).toEqual(['onnx/vision_model_quantized.onnx', 'onnx/text_model_quantized.onnx']);
    expect(onnx('cuda')).toEqual(['onnx/vision_model_fp16.onnx', 'onnx/text_model_fp16.onnx']);
  });
});
