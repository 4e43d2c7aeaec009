/**
 * The tiny test model: same directory layout and tensor names as the hub's SigLIP 2 ONNX export, but a
 * deterministic, millisecond-fast network that still "sees" colour and coarse layout:
 *
 *   pixel_values [B,3,S,S]
 *     ├─ 1×1 conv (3→8, random, fixed seed) → ReLU → 4×4 average-pool grid  (colour features per cell)
 *     └─ 4×4 average-pool grid of the raw pixels                            (layout)
 *   concat → flatten (176) → tanh(random projection) → projection → pooler_output [B,D]
 *
 * Distinct coloured shapes land far apart; resized, slightly cropped, recompressed or ±10% brightness
 * copies of an image stay nearest to their original (test/unit/embedding/tiny-model.test.ts checks it).
 * Usage: writeTinyModel(dir, { dimension: 64, imageSize: 32 }).
 */
import { FLOAT, GraphBuilder, Rng } from './onnx-builder.js';
import { tinyTextModel, tinyTokenizerJson, TEXT_MAX_LENGTH, writeLayout } from './common.js';

export interface TinyModelOptions {
  /** Embedding dimension (default 64). */
  dimension?: number;
  /** Square input size S (multiple of 4; default 32). */
  imageSize?: number;
  /** Model id written into config.json (`_name_or_path`). */
  modelId?: string;
  seed?: number;
}

export const TINY_MODEL_ID = 'vps/tiny-siglip-test';

function tinyVisionModel(dimension: number, imageSize: number, seed: number): Uint8Array {
  if (imageSize % 4 !== 0 || imageSize < 4) throw new Error('imageSize must be a positive multiple of 4');
  const rng = new Rng(seed);
  const g = new GraphBuilder('vision_model');
  const x = g.input('pixel_values', FLOAT, ['batch_size', 3, imageSize, imageSize]);
  const cell = imageSize / 4;
  const C = 8;
  const convW = g.weight('conv_w', [C, 3, 1, 1], rng.normals(C * 3, 1));
  const convB = g.weight('conv_b', [C], rng.normals(C, 0.3));
  const conv = g.op('Conv', [x, convW, convB], { kernel_shape: [1, 1] });
  const relu = g.op('Relu', [conv]);
  const pooledConv = g.op('AveragePool', [relu], { kernel_shape: [cell, cell], strides: [cell, cell] });
  const pooledRaw = g.op('AveragePool', [x], { kernel_shape: [cell, cell], strides: [cell, cell] });
  const cat = g.op('Concat', [pooledRaw, pooledConv], { axis: 1 }); // [B, 11, 4, 4]
  // last_hidden_state: 16 "patches" of 11 features, like the export's [B, N, H]
  const seq = g.op('Reshape', [cat, g.ints('shape', [0, 3 + C, 16])]);
  g.op('Transpose', [seq], { perm: [0, 2, 1] }, 'last_hidden_state');
  const F = (3 + C) * 16;
  const flat = g.op('Reshape', [cat, g.ints('shape', [0, F])]);
  const H = 128;
  const w1 = g.weight('fc1', [F, H], rng.normals(F * H, 1.5 / Math.sqrt(F)));
  const h = g.op('Tanh', [g.op('MatMul', [flat, w1])]);
  const w2 = g.weight('fc2', [H, dimension], rng.normals(H * dimension, 1 / Math.sqrt(H)));
  g.op('MatMul', [h, w2], {}, 'pooler_output');
  g.output('last_hidden_state', FLOAT, ['batch_size', 16, 3 + C]);
  g.output('pooler_output', FLOAT, ['batch_size', dimension]);
  return g.encode();
}

export async function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<string> {
  const dimension = opts.dimension ?? 64;
  const imageSize = opts.imageSize ?? 32;
  const seed = opts.seed ?? 1234;
  const { json: tokenizer, vocabSize } = tinyTokenizerJson();
  const textHidden = 32;
  const config = {
    _name_or_path: opts.modelId ?? TINY_MODEL_ID,
    architectures: ['SiglipModel'],
    model_type: 'siglip',
    initializer_factor: 1.0,
    text_config: {
      model_type: 'siglip_text_model',
      hidden_size: textHidden,
      projection_size: dimension,
      vocab_size: vocabSize,
      max_position_embeddings: TEXT_MAX_LENGTH,
      num_hidden_layers: 0,
      num_attention_heads: 1,
      intermediate_size: textHidden,
    },
    vision_config: {
      model_type: 'siglip_vision_model',
      hidden_size: dimension,
      image_size: imageSize,
      patch_size: imageSize / 4,
      num_hidden_layers: 0,
      num_attention_heads: 1,
      intermediate_size: dimension,
      num_channels: 3,
    },
  };
  await writeLayout(dir, {
    config,
    imageSize,
    tokenizer,
    vision: tinyVisionModel(dimension, imageSize, seed),
    text: tinyTextModel({ vocabSize, hidden: textHidden, dimension, seed: seed + 1 }),
  });
  return dir;
}
