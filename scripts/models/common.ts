/**
 * Shared pieces of the model-directory generators: the Hugging Face ONNX-export layout
 * (config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json, onnx/*.onnx),
 * a small Gemma-style tokenizer, and the text tower used by both generated models.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLOAT, GraphBuilder, INT64, Rng } from './onnx-builder.js';

/**
 * The checkpoint families whose JSON files test/fixtures/models/ holds as the hub publishes them (written
 * by hand from the public sources, listed in its README): every generated model directory starts from them.
 */
export type HubFamily = 'siglip2-base-patch16-224' | 'siglip2-base-patch16-naflex' | 'siglip-base-patch16-384';

const HUB_FORMS = fileURLToPath(new URL('../../test/fixtures/models/', import.meta.url));

export async function hubJson(family: HubFamily, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(HUB_FORMS, family, name), 'utf8')) as Record<string, unknown>;
}

/**
 * transformers' class defaults (SiglipVisionConfig / SiglipTextConfig; Siglip2's are the same for these
 * fields): save_pretrained leaves out every value equal to them, so a generated config.json names only
 * what differs from them, as the hub's files do.
 */
const CONFIG_DEFAULTS = {
  vision: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3, image_size: 224, patch_size: 16, num_patches: 256 },
  text: { vocab_size: 32000, hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, max_position_embeddings: 64 },
} as const;

function nonDefault(values: Record<string, number>, defaults: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).filter(([k, v]) => defaults[k] !== v));
}

/** What a generated model is: the towers' hyperparameters as transformers' config classes name them. */
export interface GeneratedModel {
  family: HubFamily;
  vision: Record<string, number>;
  /** projection_size: the text head's output width, when it differs from the tower's hidden_size. */
  text: Record<string, number>;
  /** preprocessor_config.json values that differ from the family's published file (size, max_num_patches). */
  preprocessor?: Record<string, unknown>;
  /**
   * `_name_or_path`, which save_pretrained writes for a model loaded from a local folder (the hub's own
   * files have none): names the generated model, as a checkpoint saved from a folder is named.
   */
  nameOrPath?: string;
}

/**
 * The JSON files of a generated model directory: the family's published files, config.json extended by
 * the generated model's non-default values (the short form save_pretrained writes), preprocessor_config.json
 * by the values that differ, tokenizer_config.json and special_tokens_map.json as published.
 */
export async function writeHubJson(dir: string, m: GeneratedModel): Promise<void> {
  const config = await hubJson(m.family, 'config.json');
  const vision = { ...(config['vision_config'] as Record<string, unknown>), ...nonDefault(m.vision, CONFIG_DEFAULTS.vision) };
  const text = { ...(config['text_config'] as Record<string, unknown>), ...nonDefault(m.text, CONFIG_DEFAULTS.text) };
  const out = { ...(m.nameOrPath ? { _name_or_path: m.nameOrPath } : {}), ...config, text_config: text, vision_config: vision };
  await mkdir(join(dir, 'onnx'), { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(out));
  const pp = { ...(await hubJson(m.family, 'preprocessor_config.json')), ...(m.preprocessor ?? {}) };
  await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify(pp, null, 2));
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    await writeFile(join(dir, name), await readFile(join(HUB_FORMS, m.family, name)));
  }
}

export const TEXT_MAX_LENGTH = 64;
export const PAD_ID = 0;
export const EOS_ID = 1;
export const BOS_ID = 2;
export const UNK_ID = 3;

/**
 * A Gemma-shaped tokenizer.json (BPE with byte fallback, spaces replaced by ▁, no lowercasing in the
 * tokenizer itself: SigLIP 2 lowercases in the processor, and so do we) over a small character vocabulary
 * with a handful of merges. <pad>=0, <eos>=1, <bos>=2, <unk>=3 as in Gemma.
 */
export function tinyTokenizerJson(): { json: object; vocabSize: number } {
  const vocab: Record<string, number> = { '<pad>': PAD_ID, '<eos>': EOS_ID, '<bos>': BOS_ID, '<unk>': UNK_ID };
  let next = 4;
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = next++;
  const chars = '▁abcdefghijklmnopqrstuvwxyz0123456789.,-\'&/()!?"';
  for (const c of chars) vocab[c] = next++;
  const merges: [string, string][] = [
    ['▁', 's'],
    ['▁', 'r'],
    ['▁', 'b'],
    ['▁', 'g'],
    ['e', 'd'],
    ['▁r', 'ed'],
    ['▁', 'a'],
    ['h', 'o'],
    ['e', 's'],
    ['▁s', 'ho'],
    ['▁sho', 'es'],
    ['u', 'e'],
    ['▁b', 'l'],
    ['▁bl', 'ue'],
  ];
  for (const [a, b] of merges) {
    const m = a + b;
    if (!(m in vocab)) vocab[m] = next++;
  }
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: PAD_ID, content: '<pad>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: EOS_ID, content: '<eos>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: BOS_ID, content: '<bos>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: UNK_ID, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<bos>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<bos>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<bos>': { id: '<bos>', ids: [BOS_ID], tokens: ['<bos>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  return { json, vocabSize: next };
}

/**
 * The small stand-in vocabulary in SigLIP v1's form: SiglipTokenizer's `</s>` (EOS and pad) where Gemma's
 * has `<eos>`; its tokenizer_config.json is the published one (test/fixtures/models/siglip-base-patch16-384).
 */
export function siglipV1TokenizerJson(): { json: object; vocabSize: number } {
  const { json, vocabSize } = tinyTokenizerJson();
  return { json: JSON.parse(JSON.stringify(json).replaceAll('"<eos>"', '"</s>"')) as object, vocabSize };
}

/**
 * A small text tower with the export's tensor names: input_ids int64 [B,64] →
 * last_hidden_state [B,64,H] and pooler_output [B,D] (mean over positions, then a projection).
 */
export function tinyTextModel(opts: { vocabSize: number; hidden: number; dimension: number; seed: number }): Uint8Array {
  return tinyTextGraph(opts).encode();
}

export function tinyTextGraph(opts: {
  vocabSize: number;
  hidden: number;
  dimension: number;
  seed: number;
  /** The embedding output's name: pooler_output (default) or text_embeds, as some exports name it. */
  outputName?: string;
  /**
   * Declare an attention_mask input [B,64] int64, as some third-party exports of SigLIP's text tower do,
   * and use it as such (masked positions contribute nothing to the pooled vector). With a mask of ones the
   * tower computes exactly what the same tower without the input computes.
   */
  attentionMask?: boolean;
}): GraphBuilder {
  const outName = opts.outputName ?? 'pooler_output';
  const rng = new Rng(opts.seed);
  const g = new GraphBuilder('text_model');
  const ids = g.input('input_ids', INT64, ['batch_size', TEXT_MAX_LENGTH]);
  const mask = opts.attentionMask ? g.input('attention_mask', INT64, ['batch_size', TEXT_MAX_LENGTH]) : null;
  const table = g.weight('embed_tokens', [opts.vocabSize, opts.hidden], rng.normals(opts.vocabSize * opts.hidden, 1));
  const pos = g.weight('position_embedding', [TEXT_MAX_LENGTH, opts.hidden], rng.normals(TEXT_MAX_LENGTH * opts.hidden, 0.1));
  const emb = g.op('Gather', [table, ids], { axis: 0 });
  const summed = g.op('Add', [emb, pos], {}, mask ? undefined : 'last_hidden_state');
  const hidden = mask
    ? g.op('Mul', [summed, g.op('Unsqueeze', [g.op('Cast', [mask], { to: FLOAT }), g.ints('axes', [2])])], {}, 'last_hidden_state')
    : summed;
  const mean = g.op('ReduceMean', [hidden], { axes: [1], keepdims: 0 });
  const act = g.op('Tanh', [mean]);
  const proj = g.weight('head', [opts.hidden, opts.dimension], rng.normals(opts.hidden * opts.dimension, 1 / Math.sqrt(opts.hidden)));
  g.op('MatMul', [act, proj], {}, outName);
  g.output('last_hidden_state', FLOAT, ['batch_size', TEXT_MAX_LENGTH, opts.hidden]);
  g.output(outName, FLOAT, ['batch_size', opts.dimension]);
  return g;
}

export interface LayoutFiles extends GeneratedModel {
  vision: Record<string, number>;
  visionGraph: Uint8Array;
  textGraph: Uint8Array;
  tokenizer: object;
}

/** A model directory in the ONNX export's layout: the hub's JSON files (writeHubJson), tokenizer.json, the fp32 graphs. */
export async function writeLayout(dir: string, files: LayoutFiles): Promise<void> {
  await writeHubJson(dir, files);
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(dir, 'onnx', 'vision_model.onnx'), files.visionGraph);
  await writeFile(join(dir, 'onnx', 'text_model.onnx'), files.textGraph);
}

/**
 * The combined export's graph (onnx/model.onnx in onnx-community/siglip2-*-ONNX, ~1.5 GB there), reduced to
 * its outputs' structure: inputs input_ids and pixel_values; text_embeds and image_embeds (unit length);
 * logits_per_text = MatMul(text_embeds, image_embedsᵀ) · exp(logit_scale) + logit_bias, with the two
 * parameters constant-folded into float32 initializers under exporter-generated names (the exported file
 * holds exp(logit_scale) = 112.66889953613281 and −16.771724700927734 for siglip2-base-patch16-224);
 * logits_per_image its transpose. The towers are small stand-ins: the calibration is what this file is for.
 */
export function combinedModelGraph(opts: { logitScaleExp: number; logitBias: number; imageSize: number; vocabSize: number }): GraphBuilder {
  const rng = new Rng(7);
  const g = new GraphBuilder('main_graph');
  const ids = g.input('input_ids', INT64, ['batch_size', TEXT_MAX_LENGTH]);
  const pixels = g.input('pixel_values', FLOAT, ['batch_size', 3, opts.imageSize, opts.imageSize]);
  const D = 8;
  const unit = (x: string, name: string) => g.op('Div', [x, g.op('ReduceL2', [x], { axes: [-1], keepdims: 1 })], {}, name);
  const text = g.op('MatMul', [
    g.op('ReduceMean', [g.op('Gather', [g.weight('embed_tokens', [opts.vocabSize, D], rng.normals(opts.vocabSize * D, 1)), ids], { axis: 0 })], {
      axes: [1],
      keepdims: 0,
    }),
    g.weight('text_head', [D, D], rng.normals(D * D, 0.5)),
  ]);
  const image = g.op('MatMul', [g.op('ReduceMean', [pixels], { axes: [2, 3], keepdims: 0 }), g.weight('image_head', [3, D], rng.normals(3 * D, 0.5))]);
  const textEmbeds = unit(text, 'text_embeds');
  const imageEmbeds = unit(image, 'image_embeds');
  const sims = g.op('MatMul', [textEmbeds, g.op('Transpose', [imageEmbeds], { perm: [1, 0] })]);
  const scaled = g.op('Mul', [sims, g.scalar('onnx::Mul_3411', opts.logitScaleExp)]);
  const logitsPerText = g.op('Add', [scaled, g.scalar('onnx::Add_3412', opts.logitBias)], {}, 'logits_per_text');
  g.op('Transpose', [logitsPerText], { perm: [1, 0] }, 'logits_per_image');
  g.output('logits_per_image', FLOAT, ['image_batch_size', 'text_batch_size']);
  g.output('logits_per_text', FLOAT, ['text_batch_size', 'image_batch_size']);
  g.output('text_embeds', FLOAT, ['text_batch_size', D]);
  g.output('image_embeds', FLOAT, ['image_batch_size', D]);
  return g;
}
