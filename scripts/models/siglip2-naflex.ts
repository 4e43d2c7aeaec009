/**
 * A compute-faithful SigLIP 2 NaFlex model directory with random weights, in the layout NaFlex exports
 * have in the wild (e.g. google/siglip2-base-patch16-naflex converted to ONNX):
 *
 *   inputs   pixel_values [B, N, 3·P·P] (patches, channels-last), pixel_attention_mask [B, N] int64,
 *            spatial_shapes [B, 2] int64 (patch rows, patch columns)
 *   vision   patch embedding: Linear(3·P·P → H) on each patch
 *            + learned G×G position grid, bilinearly resampled to each image's own rows × cols (the
 *              model's interpolate step, done per patch with gathers so a batch mixes aspect ratios)
 *            L × pre-norm encoder block, attention masked to the real patches
 *            post-layernorm → attention-pooling head (masked) → image_embeds [B, H]
 *   text     the small stand-in tower → text_embeds [B, H]
 *   files    onnx/{vision,text}_model.onnx with weights in onnx/*.onnx_data; preprocessor_config.json of
 *            a Siglip2ImageProcessor (patch_size, max_num_patches); logit_scale/logit_bias in a side file
 *            (logit_scale.json) rather than config.json
 *
 * The resampling is plain bilinear (align_corners false); the model's antialias only changes the weights
 * of a downscale, not the work. Usage: writeNaflexModel(dir, { hidden: 64, layers: 1, maxNumPatches: 64 }).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FLOAT, GraphBuilder, INT64, Rng } from './onnx-builder.js';
import { tinyTextGraph, tinyTokenizerJson, writeHubJson } from './common.js';
import { transformerBlocks } from './siglip-vision.js';

export interface NaflexOptions {
  patchSize?: number;
  /** The processor's patch budget (preprocessor_config.json max_num_patches). */
  maxNumPatches?: number;
  /** Side of the learned position grid (num_patches = G², 16 for the real base model). */
  positionGrid?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  mlp?: number;
  seed?: number;
  modelId?: string;
  /** Weights in onnx/*.onnx_data (default true). */
  externalData?: boolean;
  /** Calibration side file (default true; false: config.json carries none). */
  logitSideFile?: boolean;
}

export const NAFLEX_MODEL_ID = 'vps/siglip2-base-patch16-naflex-random';

function buildNaflexVision(o: Required<Omit<NaflexOptions, 'modelId' | 'externalData' | 'logitSideFile'>>): GraphBuilder {
  const { patchSize: P, positionGrid: G, hidden: H, layers: L, heads: NH, mlp: M } = o;
  const D = 3 * P * P;
  const rng = new Rng(o.seed);
  const g = new GraphBuilder('vision_model');
  const { W, zeros, layerNorm, mlpBlock, attention, encoder } = transformerBlocks(g, rng, H, NH, M);
  const f = (name: string, v: number) => g.scalar(name, v);
  const toFloat = (x: string) => g.op('Cast', [x], { to: FLOAT });

  const pixels = g.input('pixel_values', FLOAT, ['batch_size', 'num_patches', D]);
  const mask = g.input('pixel_attention_mask', INT64, ['batch_size', 'num_patches']);
  const spatial = g.input('spatial_shapes', INT64, ['batch_size', 2]);

  const embeds = g.op('Add', [g.op('MatMul', [pixels, W('patch_embedding.weight', [D, H])]), zeros('patch_embedding.bias', H)]);

  // Per patch n of image b: its row and column in that image's own grid, then the bilinear sample of the
  // G×G position table at that place (the grid stretched to rows × cols).
  const col = (i: number) => toFloat(g.op('Slice', [spatial, g.ints('s', [i]), g.ints('e', [i + 1]), g.ints('a', [1])])); // [B,1]
  const rows = g.op('Max', [col(0), f('one', 1)]);
  const cols = g.op('Max', [col(1), f('one', 1)]);
  const nPatches = toFloat(g.op('Squeeze', [g.op('Slice', [g.op('Shape', [pixels]), g.ints('s', [1]), g.ints('e', [2])]), g.ints('ax', [0])]));
  const n = g.op('Unsqueeze', [g.op('Range', [f('zero', 0), nPatches, f('one', 1)]), g.ints('ax', [0])]); // [1,N]
  const r = g.op('Floor', [g.op('Div', [n, cols])]); // [B,N]
  const c = g.op('Sub', [n, g.op('Mul', [r, cols])]);
  const source = (i: string, size: string) => {
    // align_corners=false: (i + 0.5)·G/size − 0.5, clamped to the grid
    const s = g.op('Sub', [g.op('Mul', [g.op('Add', [i, f('half', 0.5)]), g.op('Div', [f('G', G), size])]), f('half', 0.5)]);
    const clamped = g.op('Clip', [s, f('lo', 0), f('hi', G - 1)]);
    const i0 = g.op('Floor', [clamped]);
    const i1 = g.op('Min', [g.op('Add', [i0, f('one', 1)]), f('hi', G - 1)]);
    return { i0, i1, w: g.op('Sub', [clamped, i0]) };
  };
  const y = source(r, rows);
  const x = source(c, cols);
  const table = W('position_embedding', [G * G, H]);
  const at = (yy: string, xx: string) =>
    g.op('Gather', [table, g.op('Cast', [g.op('Add', [g.op('Mul', [yy, f('G', G)]), xx])], { to: INT64 })], { axis: 0 }); // [B,N,H]
  const unsq = (t: string) => g.op('Unsqueeze', [t, g.ints('ax', [-1])]);
  const oneMinus = (t: string) => g.op('Sub', [f('one', 1), t]);
  const wy = unsq(y.w);
  const wx = unsq(x.w);
  const top = g.op('Add', [g.op('Mul', [at(y.i0, x.i0), oneMinus(wx)]), g.op('Mul', [at(y.i0, x.i1), wx])]);
  const bottom = g.op('Add', [g.op('Mul', [at(y.i1, x.i0), oneMinus(wx)]), g.op('Mul', [at(y.i1, x.i1), wx])]);
  const pos = g.op('Add', [g.op('Mul', [top, oneMinus(wy)]), g.op('Mul', [bottom, wy])]);

  // padding patches take no part in attention: additive mask [B,1,1,N]
  const maskAdd = g.op('Mul', [
    g.op('Sub', [f('one', 1), g.op('Reshape', [toFloat(mask), g.ints('shape', [0, 1, 1, -1])])]),
    f('neg', -1e9),
  ]);
  const hidden = encoder(g.op('Add', [embeds, pos]), L, maskAdd);
  const last = layerNorm(hidden, 'post_layernorm', 'last_hidden_state');
  const probe = W('head.probe', [1, 1, H]);
  const batchProbe = g.op('Expand', [
    probe,
    g.op('Concat', [g.op('Slice', [g.op('Shape', [last]), g.ints('s', [0]), g.ints('e', [1])]), g.ints('rest', [1, H])], { axis: 0 }),
  ]);
  let pooled = attention(batchProbe, last, 'head.attention', maskAdd);
  pooled = g.op('Add', [pooled, mlpBlock(layerNorm(pooled, 'head.layernorm'), 'head.mlp')]);
  g.op('Reshape', [pooled, g.ints('shape', [-1, H])], {}, 'image_embeds');
  g.output('last_hidden_state', FLOAT, ['batch_size', 'num_patches', H]);
  g.output('image_embeds', FLOAT, ['batch_size', H]);
  return g;
}

export async function writeNaflexModel(dir: string, opts: NaflexOptions = {}): Promise<string> {
  const o = {
    patchSize: opts.patchSize ?? 16,
    maxNumPatches: opts.maxNumPatches ?? 256,
    positionGrid: opts.positionGrid ?? 16,
    hidden: opts.hidden ?? 768,
    layers: opts.layers ?? 12,
    heads: opts.heads ?? 12,
    mlp: opts.mlp ?? 3072,
    seed: opts.seed ?? 20250221,
  };
  const { json: tokenizer, vocabSize } = tinyTokenizerJson();
  const vision = buildNaflexVision(o);
  const text = tinyTextGraph({ vocabSize, hidden: 64, dimension: o.hidden, seed: o.seed + 1, outputName: 'text_embeds' });
  await writeHubJson(dir, {
    // google/siglip2-base-patch16-naflex's published JSON files (test/fixtures/models), config.json and
    // preprocessor_config.json extended by what differs here
    family: 'siglip2-base-patch16-naflex',
    nameOrPath: opts.modelId ?? NAFLEX_MODEL_ID,
    vision: {
      hidden_size: o.hidden,
      num_patches: o.positionGrid ** 2,
      patch_size: o.patchSize,
      num_hidden_layers: o.layers,
      num_attention_heads: o.heads,
      intermediate_size: o.mlp,
    },
    text: { vocab_size: vocabSize, hidden_size: 64, projection_size: o.hidden, num_hidden_layers: 0, num_attention_heads: 1, intermediate_size: 64 },
    preprocessor: { max_num_patches: o.maxNumPatches, patch_size: o.patchSize },
  });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  for (const [name, graph] of [
    ['vision_model', vision],
    ['text_model', text],
  ] as const) {
    if (opts.externalData ?? true) {
      const { model, data } = graph.encodeWithExternalData(`${name}.onnx_data`);
      await writeFile(join(dir, 'onnx', `${name}.onnx`), model);
      await writeFile(join(dir, 'onnx', `${name}.onnx_data`), data);
    } else {
      await writeFile(join(dir, 'onnx', `${name}.onnx`), graph.encode());
    }
  }
  if (opts.logitSideFile ?? true) {
    // Not part of the hub's export (its towers carry no calibration): the side file a user adds beside a
    // model directory (src/embedding/calibration.ts), as tensors dumped to JSON: one-element arrays,
    // log-space scale (the model's parameter)
    await writeFile(join(dir, 'logit_scale.json'), JSON.stringify({ logit_scale: [4.7], logit_bias: [-16.5] }));
  }
  return dir;
}
