/** Shared helpers for the embedding benchmarks. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import sharp from 'sharp';
import { writeSiglipVisionModel } from '../../scripts/models/siglip-vision.js';
import { parsePreprocessorConfig } from '../../src/embedding/model-dir.js';
import { resizeForModel, rgbToTensor } from '../../src/embedding/preprocess.js';
import { decodeImage } from '../../src/images/decode.js';
import { DECODE_OVERSAMPLE } from '../../src/images/embed.js';

export const B16_DIR = resolve(process.env.BENCH_MODEL_DIR ?? 'models/siglip2-b16-random');

/** The compute-faithful SigLIP 2 B/16-224 tower (random weights); generated once (~15 s; ~370 MB fp32, ~100 MB int8, ~185 MB fp16). */
export async function ensureB16(): Promise<string> {
  // the 8-bit and fp16 files came later, and the 8-bit ones changed form with `_int8`/`_uint8` (quantised as
  // transformers.js does: issue 19): a directory generated before them is regenerated
  if (
    !['vision_model_quantized.onnx', 'vision_model_int8.onnx', 'vision_model_fp16.onnx'].every((f) =>
      existsSync(resolve(B16_DIR, 'onnx', f)),
    )
  ) {
    console.error(`generating ${B16_DIR} …`);
    await writeSiglipVisionModel(B16_DIR);
  }
  return B16_DIR;
}

// Statistics and tables are shared by every benchmark.
export { median, percentile, table } from '../lib/report.js';

/**
 * Photo-like JPEGs (gradients, texture, shapes, noise), so the decoder and resampler do real work.
 */
export async function photoJpegs(n: number, width: number, height: number, seed = 1): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let k = 0; k < n; k++) {
    const raw = Buffer.alloc(width * height * 3);
    let s = (seed * 7919 + k * 104729) >>> 0;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
    const cx = rnd() * width,
      cy = rnd() * height,
      r = (0.2 + 0.3 * rnd()) * Math.min(width, height);
    const hue = [rnd() * 255, rnd() * 255, rnd() * 255];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 3;
        const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
        const tex = 30 * Math.sin(x / (3 + k)) * Math.cos(y / (5 + k));
        for (let c = 0; c < 3; c++) {
          const base = inside ? hue[c]! : (255 * (x / width + y / height + c * 0.3)) % 255;
          raw[i + c] = Math.max(0, Math.min(255, base + tex + (rnd() - 0.5) * 20));
        }
      }
    }
    out.push(
      await sharp(raw, { raw: { width, height, channels: 3 } })
        .jpeg({ quality: 88 })
        .toBuffer(),
    );
  }
  return out;
}

export const mib = (b: number) => b / 1024 / 1024;

import { loadavg } from 'node:os';
/** One line describing the machine state, printed with every table (these machines are shared and noisy). */
export const loadLine = () =>
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ')} (1/5/15 min)`;

/** Process CPU time (user + system, every thread) of a process.cpuUsage() difference, in ms. */
export const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;

/** SigLIP 2's input side and its preprocessing (224, BILINEAR, mean/std 0.5): no model needed. */
export const MODEL_SIDE = 224;
const siglipSpec = parsePreprocessorConfig({ size: { height: MODEL_SIDE, width: MODEL_SIDE }, resample: 2 });
/** Decoded no smaller than this where the format shrinks on load: what the service asks (images/embed.ts). */
export const SHRUNK_DECODE = { width: DECODE_OVERSAMPLE * MODEL_SIDE, height: DECODE_OVERSAMPLE * MODEL_SIDE };
// a cap above 50 MP, so that a full-size decode can be measured at all
const benchLimits = { maxImageBytes: 256 * 1024 * 1024, maxImagePixels: 60_000_000 };

export interface PreprocessSample {
  decodeCpu: number;
  resizeCpu: number;
  wall: number;
  decoded: string;
}

/**
 * One photo's preprocessing with the service's functions (images/decode.ts, embedding/preprocess.ts):
 * decode (shrunk on load to SHRUNK_DECODE, or at full size), then the Pillow-exact squash and
 * normalisation to the model's input; CPU ms of each step, wall ms of both.
 */
export async function preprocessOnce(jpeg: Buffer, shrunk: boolean): Promise<PreprocessSample> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const img = await decodeImage(jpeg, benchLimits, undefined, shrunk ? SHRUNK_DECODE : null);
  const decodeCpu = cpuMs(process.cpuUsage(c0));
  const c1 = process.cpuUsage();
  rgbToTensor(resizeForModel(img, siglipSpec), MODEL_SIDE, MODEL_SIDE, siglipSpec);
  const resizeCpu = cpuMs(process.cpuUsage(c1));
  return { decodeCpu, resizeCpu, wall: performance.now() - t0, decoded: `${img.width}×${img.height}` };
}
