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
import { FLOAT, GraphBuilder, Rng } from './onnx-builder.js';
import { siglipConfigJson, tinyTextModel, tinyTokenizerJson, writeLayout } from './common.js';

export interface SiglipVisionOptions {
  imageSize?: number;
  patchSize?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  mlp?: number;
  seed?: number;
  modelId?: string;
}

export const B16_MODEL_ID = 'vps/siglip2-base-patch16-224-random';

function buildVision(o: Required<Omit<SiglipVisionOptions, 'modelId'>>): Uint8Array {
  const { imageSize: S, patchSize: P, hidden: H, layers: L, heads: NH, mlp: M } = o;
  if (S % P !== 0) throw new Error('imageSize must be a multiple of patchSize');
  if (H % NH !== 0) throw new Error('hidden must be a multiple of heads');
  const N = (S / P) ** 2;
  const dh = H / NH;
  const rng = new Rng(o.seed);
  const g = new GraphBuilder('vision_model');
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
  const layerNorm = (x: string, name: string) =>
    g.op('LayerNormalization', [x, ones(`${name}.weight`, H), zeros(`${name}.bias`, H)], { axis: -1, epsilon: 1e-6 });
  const geluTanh = (x: string) => {
    const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Add', [x, g.op('Mul', [x3, g.scalar('c', 0.044715)])]);
    const t = g.op('Tanh', [g.op('Mul', [inner, g.scalar('c', Math.sqrt(2 / Math.PI))])]);
    return g.op('Mul', [g.op('Mul', [x, g.scalar('half', 0.5)]), g.op('Add', [t, g.scalar('one', 1)])]);
  };
  const mlpBlock = (x: string, name: string) => linear(geluTanh(linear(x, H, M, `${name}.fc1`)), M, H, `${name}.fc2`);
  const splitHeads = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, g.ints('shape', [0, 0, NH, dh])])], { perm });
  const attention = (q: string, kv: string, name: string) => {
    const Q = splitHeads(linear(q, H, H, `${name}.q_proj`), [0, 2, 1, 3]); // [B,h,Nq,dh]
    const K = splitHeads(linear(kv, H, H, `${name}.k_proj`), [0, 2, 3, 1]); // [B,h,dh,N]
    const V = splitHeads(linear(kv, H, H, `${name}.v_proj`), [0, 2, 1, 3]); // [B,h,N,dh]
    const scores = g.op('Mul', [g.op('MatMul', [Q, K]), g.scalar('scale', 1 / Math.sqrt(dh))]);
    const probs = g.op('Softmax', [scores], { axis: -1 });
    const ctx = g.op('Transpose', [g.op('MatMul', [probs, V])], { perm: [0, 2, 1, 3] });
    const merged = g.op('Reshape', [ctx, g.ints('shape', [0, 0, H])]);
    return linear(merged, H, H, `${name}.out_proj`);
  };

  const pixels = g.input('pixel_values', FLOAT, ['batch_size', 3, S, S]);
  const patches = g.op('Conv', [pixels, W('patch_embedding.weight', [H, 3, P, P]), zeros('patch_embedding.bias', H)], {
    kernel_shape: [P, P],
    strides: [P, P],
  });
  const tokens = g.op('Transpose', [g.op('Reshape', [patches, g.ints('shape', [0, H, -1])])], { perm: [0, 2, 1] });
  let x = g.op('Add', [tokens, W('position_embedding', [1, N, H])]);
  for (let l = 0; l < L; l++) {
    const p = `encoder.layers.${l}`;
    const h = layerNorm(x, `${p}.layer_norm1`);
    x = g.op('Add', [x, attention(h, h, `${p}.self_attn`)]);
    x = g.op('Add', [x, mlpBlock(layerNorm(x, `${p}.layer_norm2`), `${p}.mlp`)]);
  }
  const last = g.op(
    'LayerNormalization',
    [x, ones('post_layernorm.weight', H), zeros('post_layernorm.bias', H)],
    { axis: -1, epsilon: 1e-6 },
    'last_hidden_state',
  );
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
  return g.encode();
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
  const { json: tokenizer, vocabSize } = tinyTokenizerJson();
  const config = siglipConfigJson({
    modelId: opts.modelId ?? B16_MODEL_ID,
    vocabSize,
    textHidden: 64,
    dimension: o.hidden,
    vision: {
      image_size: o.imageSize,
      patch_size: o.patchSize,
      num_hidden_layers: o.layers,
      num_attention_heads: o.heads,
      intermediate_size: o.mlp,
      hidden_act: 'gelu_pytorch_tanh',
      layer_norm_eps: 1e-6,
      vision_use_head: true,
    },
  });
  await writeLayout(dir, {
    config,
    imageSize: o.imageSize,
    tokenizer,
    vision: buildVision(o),
    text: tinyTextModel({ vocabSize, hidden: 64, dimension: o.hidden, seed: o.seed + 1 }),
  });
  return dir;
}
