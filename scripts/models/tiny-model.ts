/**
 * The tiny test model: same directory layout and tensor names as the hub's SigLIP 2 ONNX export, but a
 * deterministic, millisecond-fast network that still "sees" colour and coarse layout:
 *
 *   pixel_values [B,3,S,S]
 *     ├─ 8×8 average-pool grid, minus the image's mean colour, unit norm          (layout)
 *     ├─ 1×1 conv (3→8, random, fixed seed) → ReLU → same grid, centred, unit norm (colour detectors)
 *     ├─ per-cell chroma R−G, G−B                                                  (colour × layout)
 *     └─ the image's mean colour                                                   (overall colour)
 *   concat (835) → tanh(high-gain random projection, 256) → random projection → pooler_output [B,D]
 *
 * Distinct coloured shapes land far apart; resized, slightly cropped, recompressed or ±10% brightness
 * copies of an image stay nearest to their original (test/unit/embedding/tiny-model.test.ts checks it).
 * Usage: writeTinyModel(dir, { dimension: 64, imageSize: 32 }).
 */
import { FLOAT, GraphBuilder, Rng } from './onnx-builder.js';
import { tinyTextModel, tinyTokenizerJson, writeLayout } from './common.js';

export interface TinyModelOptions {
  /** Embedding dimension (default 64). */
  dimension?: number;
  /** Square input size S (multiple of 8; default 32). */
  imageSize?: number;
  /** Model id written into config.json (`_name_or_path`, as save_pretrained writes for a model loaded from a folder). */
  modelId?: string;
  seed?: number;
}

export const TINY_MODEL_ID = 'vps/tiny-siglip-test';

function tinyVisionModel(dimension: number, imageSize: number, seed: number): Uint8Array {
  if (imageSize % 8 !== 0 || imageSize < 8) throw new Error('imageSize must be a positive multiple of 8');
  const rng = new Rng(seed);
  const g = new GraphBuilder('vision_model');
  const x = g.input('pixel_values', FLOAT, ['batch_size', 3, imageSize, imageSize]);
  const cell = imageSize / 8;
  const C = 8;
  const pool = (t: string) => g.op('AveragePool', [t], { kernel_shape: [cell, cell], strides: [cell, cell] });
  // contrast to the image's mean, scaled to unit norm: a faint shape counts as much as a dark one
  const centred = (t: string) => {
    const m = g.op('ReduceMean', [t], { axes: [2, 3], keepdims: 1 });
    const c = g.op('Sub', [t, m]);
    const n = g.op('Add', [g.op('ReduceL2', [c], { axes: [1, 2, 3], keepdims: 1 }), g.scalar('eps', 0.05)]);
    return { contrast: g.op('Div', [c, n]), mean: m };
  };
  // layout: 8×8 grid of colour, relative to the image's mean colour (a uniform shift of the background,
  // e.g. ±10% brightness, mostly cancels)
  const raw = centred(pool(x));
  // colour detectors: 1×1 conv (3→8) + ReLU, pooled on the same grid, also relative to their mean
  const convW = g.weight('conv_w', [C, 3, 1, 1], rng.normals(C * 3, 1));
  const convB = g.weight('conv_b', [C], rng.normals(C, 0.3));
  const det = centred(pool(g.op('Relu', [g.op('Conv', [x, convW, convB], { kernel_shape: [1, 1] })])));
  // chroma per cell (R−G, G−B): shape and colour at once, unchanged by white backgrounds, scaled by brightness only
  const chromaW = g.weight('chroma_w', [2, 3, 1, 1], Float32Array.from([1, -1, 0, 0, 1, -1]));
  const chroma = g.op('Mul', [g.op('Conv', [pool(x), chromaW], { kernel_shape: [1, 1] }), g.scalar('w', 1)]);
  const grid = g.op('Concat', [raw.contrast, det.contrast, chroma], { axis: 1 }); // [B,13,8,8]
  // last_hidden_state: 64 "patches" of 11 features, like the export's [B, N, H]
  const seq = g.op('Reshape', [grid, g.ints('shape', [0, 5 + C, 64])]);
  g.op('Transpose', [seq], { perm: [0, 2, 1] }, 'last_hidden_state');
  const F = (5 + C) * 64;
  const flat = g.op('Reshape', [grid, g.ints('shape', [0, F])]);
  const globalColour = g.op('Mul', [g.op('Reshape', [raw.mean, g.ints('shape', [0, 3])]), g.scalar('w', 0.5)]);
  const feats = g.op('Concat', [flat, globalColour], { axis: 1 });
  // random-hyperplane features with a high gain (LSH-like): near-duplicates keep their sign pattern, distinct
  // images decorrelate, which spreads the otherwise crowded "shape on white" images apart
  const H = 256;
  const gain = 30;
  const w1 = g.weight('fc1', [F + 3, H], rng.normals((F + 3) * H, gain / Math.sqrt(F + 3)));
  const hidden = g.op('Tanh', [g.op('MatMul', [feats, w1])]);
  const w2 = g.weight('fc2', [H, dimension], rng.normals(H * dimension, 1 / Math.sqrt(H)));
  g.op('MatMul', [hidden, w2], {}, 'pooler_output');
  g.output('last_hidden_state', FLOAT, ['batch_size', 64, 5 + C]);
  g.output('pooler_output', FLOAT, ['batch_size', dimension]);
  return g.encode();
}

export async function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<string> {
  const dimension = opts.dimension ?? 64;
  const imageSize = opts.imageSize ?? 32;
  const seed = opts.seed ?? 1234;
  const { json: tokenizer, vocabSize } = tinyTokenizerJson();
  const textHidden = 32;
  await writeLayout(dir, {
    // SigLIP 2's published JSON files (test/fixtures/models), config.json extended by this network's sizes
    family: 'siglip2-base-patch16-224',
    nameOrPath: opts.modelId ?? TINY_MODEL_ID,
    vision: {
      hidden_size: dimension,
      image_size: imageSize,
      patch_size: imageSize / 8,
      num_hidden_layers: 0,
      num_attention_heads: 1,
      intermediate_size: dimension,
    },
    text: { vocab_size: vocabSize, hidden_size: textHidden, projection_size: dimension, num_hidden_layers: 0, num_attention_heads: 1, intermediate_size: textHidden },
    preprocessor: { size: { height: imageSize, width: imageSize } },
    tokenizer,
    visionGraph: tinyVisionModel(dimension, imageSize, seed),
    textGraph: tinyTextModel({ vocabSize, hidden: textHidden, dimension, seed: seed + 1 }),
  });
  return dir;
}
