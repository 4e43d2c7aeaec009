/**
 * What the embedding path asks the decoder for (images/embed.ts decodeSizeFor): DECODE_OVERSAMPLE × the
 * model's input, more where a region is cropped from the photo; and that a photo decoded shrunk embeds as
 * the full-size decode does. Real engine: the tiny generated model (32×32 input) in ONNX Runtime.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../../src/embedding/index.js';
import { DECODE_OVERSAMPLE, decodeForModel, decodeSizeFor, embedImageBytes } from '../../../src/images/embed.js';
import { cleanupDirs, dot, tinyModel } from '../embedding/helpers.js';

describe('images/embed: decoding at the size the model needs (issue 23)', () => {
  let e: Embedder;
  beforeAll(async () => {
    e = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: await tinyModel(), intraOpThreads: 1 });
  }, 60_000);
  afterAll(async () => {
    await e?.close();
    await cleanupDirs();
  });

  it('asks for DECODE_OVERSAMPLE × the input size, and enough that the smallest region keeps it', () => {
    const S = e.inputSize().width;
    expect(decodeSizeFor(e)).toEqual({ width: DECODE_OVERSAMPLE * S, height: DECODE_OVERSAMPLE * S });
    const regions = [
      { x: 0, y: 0, width: 0.5, height: 0.25 },
      { x: 0.5, y: 0.5, width: 0.8, height: 0.5 },
    ];
    expect(decodeSizeFor(e, regions)).toEqual({ width: 2 * DECODE_OVERSAMPLE * S, height: 4 * DECODE_OVERSAMPLE * S });
  });

  it('embeds a photo over the full-decode cap, decoded shrunk, as the full-size decode embeds it', async () => {
    // a photo-like JPEG: gradients, a disc and sensor noise
    const [W, H] = [1600, 1200];
    const raw = Buffer.alloc(W * H * 3);
    let s = 7;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const n = (s >>> 28) - 8;
        const inDisc = (x - 900) ** 2 + (y - 500) ** 2 < 300 ** 2;
        const i = (y * W + x) * 3;
        raw[i] = Math.max(0, Math.min(255, (inDisc ? 200 : (x * 255) / W) + n));
        raw[i + 1] = Math.max(0, Math.min(255, (inDisc ? 40 : (y * 255) / H) + n));
        raw[i + 2] = Math.max(0, Math.min(255, 90 + n));
      }
    const jpeg = await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const capped = { maxImageBytes: 16 * 1024 * 1024, maxImagePixels: 1_000_000 };
    const [shrunk] = await embedImageBytes(e, [jpeg], capped); // over the cap, accepted: it shrinks on load
    const full = await decodeForModel(jpeg, { ...capped, maxImagePixels: W * H });
    expect([full.width, full.height]).toEqual([W, H]);
    const [reference] = await e.embedImages([full]);
    expect(dot(shrunk!, reference!)).toBeGreaterThan(0.999);
    // the same photo turned 180° lands far away (measured −0.45): the comparison can tell images apart
    const [turned] = await e.embedImages([{ data: new Uint8Array(full.data).reverse(), width: W, height: H }]);
    expect(dot(turned!, reference!)).toBeLessThan(0.9);
  });
});
