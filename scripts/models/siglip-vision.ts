/**
 * A compute-faithful SigLIP 2 vision tower (FixRes, B/16-224 by default) with random weights, built with
 * onnx-proto in the hub export's layout and tensor names. Real weights cannot be fetched here; this model
 * has the real architecture and therefore the real cost:
 *
 *   patch embedding (Conv P×P stride P) + learned position embedding
 *   L × pre-norm encoder block: LN → MHA (heads h, q/k/v/o projections, softmax(QKᵀ/√d)) → residual
 *                               LN → MLP (H → M, GELU-tanh, M → H) → residual
 *   post-layernorm → last_hidden_state [B,N,H]
 *   attention-pooling head (learned probe attends over tokens, LN, MLP residual) → pooler_output [B,H]
 *
 * GELU-tanh is written out as the PyTorch exporter emits it (0.5·x·(1+tanh(√(2/π)(x+0.044715x³)))),
 * so ONNX Runtime's fusions see what they would see on a real export.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FLOAT, GraphBuilder, INT64, q8WeightType, Rng } from './onnx-builder.js';
import { siglipV1TokenizerJson, TEXT_MAX_LENGTH, tinyTextGraph, tinyTokenizerJson, writeLayout } from './common.js';

export interface SiglipVisionOptions {
  imageSize?: number;
  patchSize?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  mlp?: number;
  seed?: number;
  modelId?: string;
  /** 'tiny' (default): the small stand-in text tower; 'base': one of SigLIP 2 base's size (BASE_TEXT). */
  textTower?: 'tiny' | 'base';
  /**
   * Also write the 8-bit variants onnx/{vision,text}_model_{quantized,int8,uint8}.onnx (default true):
   * dynamic 8-bit weights with uint8 activations, as transformers.js quantises (GraphBuilder.encodeQuantized).
   */
  quantized?: boolean;
  /**
   * Also write the float16 variants onnx/{vision,text}_model_fp16.onnx (default true): the whole graph
   * in half precision with float32 inputs and outputs (keep_io_types), as the hub's fp16 exports
   * (GraphBuilder.encodeFloat16).
   */
  fp16?: boolean;
  /**
   * 'siglip2' (default): SigLIP 2 FixRes (Gemma tokenizer). 'siglip': SigLIP v1 as the hub exports it
   * (google/siglip-base-patch16-384: the same vision tower, SiglipTokenizer with </s> as EOS and pad).
   */
  family?: 'siglip' | 'siglip2';
}

export const B16_MODEL_ID = 'vps/siglip2-base-patch16-224-random';
export const V1_384_MODEL_ID = 'vps/siglip-base-patch16-384-random';

/** The pieces both towers are made of (pre-norm transformer encoder blocks, as in SigLIP). */
export function transformerBlocks(g: GraphBuilder, rng: Rng, H: number, NH: number, M: number) {
  const dh = H / NH;
  const std = 0.02;
  const W = (name: string, dims: number[], s = std) =>
    g.weight(
      name,
      dims,
      rng.normals(
        dims.reduce((a, b) => a * b, 1),
        s,
      ),
    );
  const ones = (name: string, n: number) => g.weight(name, [n], new Float32Array(n).fill(1));
  const zeros = (name: string, n: number) => g.weight(name, [n], new Float32Array(n));

  const linear = (x: string, inDim: number, outDim: number, name: string) =>
    g.op('Add', [g.op('MatMul', [x, W(`${name}.weight`, [inDim, outDim])]), zeros(`${name}.bias`, outDim)]);
  const layerNorm = (x: string, name: string, outName?: string) =>
    g.op('LayerNormalization', [x, ones(`${name}.weight`, H), zeros(`${name}.bias`, H)], { axis: -1, epsilon: 1e-6 }, outName);
  const geluTanh = (x: string) => {
    const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Add', [x, g.op('Mul', [x3, g.scalar('c', 0.044715)])]);
    const t = g.op('Tanh', [g.op('Mul', [inner, g.scalar('c', Math.sqrt(2 / Math.PI))])]);
    return g.op('Mul', [g.op('Mul', [x, g.scalar('half', 0.5)]), g.op('Add', [t, g.scalar('one', 1)])]);
  };
  const mlpBlock = (x: string, name: string) => linear(geluTanh(linear(x, H, M, `${name}.fc1`)), M, H, `${name}.fc2`);
  const splitHeads = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, g.ints('shape', [0, 0, NH, dh])])], { perm });
  /** maskAdd: an additive [B,1,1,N] mask (0 for real tokens, a large negative for padding), as NaFlex uses. */
  const attention = (q: string, kv: string, name: string, maskAdd?: string) => {
    const Q = splitHeads(linear(q, H, H, `${name}.q_proj`), [0, 2, 1, 3]); // [B,h,Nq,dh]
    const K = splitHeads(linear(kv, H, H, `${name}.k_proj`), [0, 2, 3, 1]); // [B,h,dh,N]
    const V = splitHeads(linear(kv, H, H, `${name}.v_proj`), [0, 2, 1, 3]); // [B,h,N,dh]
    const scaled = g.op('Mul', [g.op('MatMul', [Q, K]), g.scalar('scale', 1 / Math.sqrt(dh))]);
    const scores = maskAdd ? g.op('Add', [scaled, maskAdd]) : scaled;
    const probs = g.op('Softmax', [scores], { axis: -1 });
    const ctx = g.op('Transpose', [g.op('MatMul', [probs, V])], { perm: [0, 2, 1, 3] });
    const merged = g.op('Reshape', [ctx, g.ints('shape', [0, 0, H])]);
    return linear(merged, H, H, `${name}.out_proj`);
  };
  const encoder = (input: string, layers: number, maskAdd?: string) => {
    let x = input;
    for (let l = 0; l < layers; l++) {
      const p = `encoder.layers.${l}`;
      const h = layerNorm(x, `${p}.layer_norm1`);
      x = g.op('Add', [x, attention(h, h, `${p}.self_attn`, maskAdd)]);
      x = g.op('Add', [x, mlpBlock(layerNorm(x, `${p}.layer_norm2`), `${p}.mlp`)]);
    }
    return x;
  };
  return { W, zeros, linear, layerNorm, mlpBlock, attention, encoder };
}

function buildVision(o: Required<Omit<SiglipVisionOptions, 'modelId' | 'textTower' | 'quantized' | 'fp16' | 'family'>>): GraphBuilder {
  const { imageSize: S, patchSize: P, hidden: H, layers: L, heads: NH, mlp: M } = o;
  if (S % P !== 0) throw new Error('imageSize must be a multiple of patchSize');
  if (H % NH !== 0) throw new Error('hidden must be a multiple of heads');
  const N = (S / P) ** 2;
  const rng = new Rng(o.seed);
  const g = new GraphBuilder('vision_model');
  const { W, zeros, layerNorm, mlpBlock, attention, encoder } = transformerBlocks(g, rng, H, NH, M);

  const pixels = g.input('pixel_values', FLOAT, ['batch_size', 3, S, S]);
  const patches = g.op('Conv', [pixels, W('patch_embedding.weight', [H, 3, P, P]), zeros('patch_embedding.bias', H)], {
    kernel_shape: [P, P],
    strides: [P, P],
  });
  const tokens = g.op('Transpose', [g.op('Reshape', [patches, g.ints('shape', [0, H, -1])])], { perm: [0, 2, 1] });
  const x = encoder(g.op('Add', [tokens, W('position_embedding', [1, N, H])]), L);
  const last = layerNorm(x, 'post_layernorm', 'last_hidden_state');
  // Multihead attention pooling head: a learned probe (batch-broadcast) attends over all tokens.
  const probe = W('head.probe', [1, 1, H]);
  const batchProbe = g.op('Expand', [
    probe,
    g.op('Concat', [g.op('Slice', [g.op('Shape', [last]), g.ints('s', [0]), g.ints('e', [1])]), g.ints('rest', [1, H])], { axis: 0 }),
  ]);
  let hsum = attention(batchProbe, last, 'head.attention');
  hsum = g.op('Add', [hsum, mlpBlock(layerNorm(hsum, 'head.layernorm'), 'head.mlp')]);
  g.op('Reshape', [hsum, g.ints('shape', [-1, H])], {}, 'pooler_output');
  g.output('last_hidden_state', FLOAT, ['batch_size', N, H]);
  g.output('pooler_output', FLOAT, ['batch_size', H]);
  return g;
}

/** SigLIP 2 base's text tower: 256 000-token vocabulary, 12 layers, width 768 (~1.1 GB in fp32). */
export const BASE_TEXT = { vocabSize: 256_000, hidden: 768, layers: 12, heads: 12, mlp: 3072 } as const;

/**
 * A text tower of the real SigLIP 2 base's size and shape (random weights), for memory measurements:
 * token + position embeddings → encoder → final LayerNorm → last token → head projection.
 * Only the first ids of its table are ever produced by the small stand-in tokenizer.
 */
function buildBaseText(seed: number, dimension: number): GraphBuilder {
  const { vocabSize: V, hidden: H, layers: L, heads: NH, mlp: M } = BASE_TEXT;
  const rng = new Rng(seed);
  const g = new GraphBuilder('text_model');
  const { W, linear, layerNorm, encoder } = transformerBlocks(g, rng, H, NH, M);
  const ids = g.input('input_ids', INT64, ['batch_size', TEXT_MAX_LENGTH]);
  const emb = g.op('Gather', [W('embed_tokens', [V, H]), ids], { axis: 0 });
  const x = encoder(g.op('Add', [emb, W('position_embedding', [TEXT_MAX_LENGTH, H])]), L);
  const last = layerNorm(x, 'final_layer_norm', 'last_hidden_state');
  const pooled = g.op('Gather', [last, g.ints('last', [TEXT_MAX_LENGTH - 1])], { axis: 1 });
  g.op('Reshape', [linear(pooled, H, dimension, 'head'), g.ints('shape', [-1, dimension])], {}, 'pooler_output');
  g.output('last_hidden_state', FLOAT, ['batch_size', TEXT_MAX_LENGTH, H]);
  g.output('pooler_output', FLOAT, ['batch_size', dimension]);
  return g;
}

export async function writeSiglipVisionModel(dir: string, opts: SiglipVisionOptions = {}): Promise<string> {
  const o = {
    imageSize: opts.imageSize ?? 224,
    patchSize: opts.patchSize ?? 16,
    hidden: opts.hidden ?? 768,
    layers: opts.layers ?? 12,
    heads: opts.heads ?? 12,
    mlp: opts.mlp ?? 3072,
    seed: opts.seed ?? 20250220,
  };
  const v1 = opts.family === 'siglip';
  const { json: tokenizer, vocabSize } = v1 ? siglipV1TokenizerJson() : tinyTokenizerJson();
  const baseText = opts.textTower === 'base';
  const vision = buildVision(o);
  const text = baseText
    ? buildBaseText(o.seed + 1, o.hidden)
    : tinyTextGraph({ vocabSize, hidden: 64, dimension: o.hidden, seed: o.seed + 1 });
  await writeLayout(dir, {
    // the family's published JSON files (test/fixtures/models), config.json extended by what differs here
    family: v1 ? 'siglip-base-patch16-384' : 'siglip2-base-patch16-224',
    nameOrPath: opts.modelId ?? B16_MODEL_ID,
    vision: {
      hidden_size: o.hidden,
      image_size: o.imageSize,
      patch_size: o.patchSize,
      num_hidden_layers: o.layers,
      num_attention_heads: o.heads,
      intermediate_size: o.mlp,
    },
    text: baseText
      ? { vocab_size: BASE_TEXT.vocabSize, hidden_size: BASE_TEXT.hidden, num_hidden_layers: BASE_TEXT.layers, num_attention_heads: BASE_TEXT.heads, intermediate_size: BASE_TEXT.mlp }
      : { vocab_size: vocabSize, hidden_size: 64, projection_size: o.hidden, num_hidden_layers: 0, num_attention_heads: 1, intermediate_size: 64 },
    preprocessor: { size: { height: o.imageSize, width: o.imageSize } },
    tokenizer,
    visionGraph: vision.encode(),
    textGraph: text.encode(),
  });
  if (opts.fp16 ?? true) {
    // the variant EMBEDDING_VARIANT=auto opens on CUDA (model-dir.ts)
    await writeFile(join(dir, 'onnx', 'vision_model_fp16.onnx'), vision.encodeFloat16());
    await writeFile(join(dir, 'onnx', 'text_model_fp16.onnx'), text.encodeFloat16());
  }
  if (opts.quantized ?? true) {
    // as transformers.js's scripts/quantize.py names and quantises them (GraphBuilder.encodeQuantized):
    // `_quantized` (q8: unsigned weights in the vision tower, which has a Conv; signed in the text tower),
    // `_int8` (signed weights everywhere, the vision tower's patch Conv included) and `_uint8`
    for (const [name, g] of [
      ['vision_model', vision],
      ['text_model', text],
    ] as const) {
      await writeFile(join(dir, 'onnx', `${name}_quantized.onnx`), g.encodeQuantized({ weightType: q8WeightType(g) }));
      await writeFile(join(dir, 'onnx', `${name}_int8.onnx`), g.encodeQuantized({ weightType: 'int8' }));
      await writeFile(join(dir, 'onnx', `${name}_uint8.onnx`), g.encodeQuantized({ weightType: 'uint8' }));
    }
  }
  return dir;
}
