/**
 * Shared pieces of the model-directory generators: the Hugging Face ONNX-export layout
 * (config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json, onnx/*.onnx),
 * a small Gemma-style tokenizer, and the text tower used by both generated models.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FLOAT, GraphBuilder, INT64, Rng } from './onnx-builder.js';

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

export function tokenizerConfigJson() {
  return {
    add_bos_token: false,
    add_eos_token: true,
    bos_token: '<bos>',
    eos_token: '<eos>',
    pad_token: '<pad>',
    unk_token: '<unk>',
    model_max_length: TEXT_MAX_LENGTH,
    padding_side: 'right',
    tokenizer_class: 'GemmaTokenizer',
    clean_up_tokenization_spaces: false,
  };
}

/**
 * SigLIP v1's tokenizer files as the hub's exports have them: tokenizer_class SiglipTokenizer, </s> as
 * both EOS and pad, do_lower_case; the vocabulary is the small stand-in's with <eos> named </s>.
 */
export function siglipV1TokenizerFiles(): { json: object; config: Record<string, unknown>; vocabSize: number } {
  const { json, vocabSize } = tinyTokenizerJson();
  const text = JSON.stringify(json).replaceAll('"<eos>"', '"</s>"');
  return {
    json: JSON.parse(text) as object,
    vocabSize,
    config: {
      do_lower_case: true,
      eos_token: '</s>',
      pad_token: '</s>',
      unk_token: '<unk>',
      model_max_length: TEXT_MAX_LENGTH,
      tokenizer_class: 'SiglipTokenizer',
      clean_up_tokenization_spaces: true,
    },
  };
}

export function preprocessorConfigJson(imageSize: number) {
  return {
    do_convert_rgb: null,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: 'SiglipImageProcessor',
    image_std: [0.5, 0.5, 0.5],
    processor_class: 'SiglipProcessor',
    resample: 2,
    rescale_factor: 0.00392156862745098,
    size: { height: imageSize, width: imageSize },
  };
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
}): GraphBuilder {
  const outName = opts.outputName ?? 'pooler_output';
  const rng = new Rng(opts.seed);
  const g = new GraphBuilder('text_model');
  const ids = g.input('input_ids', INT64, ['batch_size', TEXT_MAX_LENGTH]);
  const table = g.weight('embed_tokens', [opts.vocabSize, opts.hidden], rng.normals(opts.vocabSize * opts.hidden, 1));
  const pos = g.weight('position_embedding', [TEXT_MAX_LENGTH, opts.hidden], rng.normals(TEXT_MAX_LENGTH * opts.hidden, 0.1));
  const emb = g.op('Gather', [table, ids], { axis: 0 });
  const hidden = g.op('Add', [emb, pos], {}, 'last_hidden_state');
  const mean = g.op('ReduceMean', [hidden], { axes: [1], keepdims: 0 });
  const act = g.op('Tanh', [mean]);
  const proj = g.weight('head', [opts.hidden, opts.dimension], rng.normals(opts.hidden * opts.dimension, 1 / Math.sqrt(opts.hidden)));
  g.op('MatMul', [act, proj], {}, outName);
  g.output('last_hidden_state', FLOAT, ['batch_size', TEXT_MAX_LENGTH, opts.hidden]);
  g.output(outName, FLOAT, ['batch_size', opts.dimension]);
  return g;
}

/**
 * config.json as the hub's SigLIP exports write it. The text tower here is always the small stand-in
 * (no transformer layers); `vision` adds the vision tower's own fields.
 */
export function siglipConfigJson(opts: {
  modelId: string;
  vocabSize: number;
  textHidden: number;
  dimension: number;
  vision: {
    image_size: number;
    patch_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    intermediate_size: number;
  } & Record<string, unknown>;
}) {
  return {
    _name_or_path: opts.modelId,
    architectures: ['SiglipModel'],
    model_type: 'siglip',
    initializer_factor: 1.0,
    text_config: {
      model_type: 'siglip_text_model',
      hidden_size: opts.textHidden,
      projection_size: opts.dimension,
      vocab_size: opts.vocabSize,
      max_position_embeddings: TEXT_MAX_LENGTH,
      num_hidden_layers: 0,
      num_attention_heads: 1,
      intermediate_size: opts.textHidden,
    },
    vision_config: { model_type: 'siglip_vision_model', hidden_size: opts.dimension, num_channels: 3, ...opts.vision },
  };
}

export interface LayoutFiles {
  config: object;
  imageSize: number;
  vision: Uint8Array;
  text: Uint8Array;
  tokenizer: object;
}

export async function writeLayout(dir: string, files: LayoutFiles): Promise<void> {
  await mkdir(join(dir, 'onnx'), { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(files.config, null, 2));
  await writeFile(join(dir, 'preprocessor_config.json'), JSON.stringify(preprocessorConfigJson(files.imageSize), null, 2));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(), null, 2));
  await writeFile(join(dir, 'onnx', 'vision_model.onnx'), files.vision);
  await writeFile(join(dir, 'onnx', 'text_model.onnx'), files.text);
}
