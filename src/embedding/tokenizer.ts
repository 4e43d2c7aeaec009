/**
 * SigLIP text preprocessing with tokenizer.json through @huggingface/tokenizers, in the convention of the
 * model family (textConvention, from tokenizer_config.json):
 * - SigLIP 2 (Gemma tokenizer): lowercase (SigLIP 2 was trained on lowercased text; its shipped tokenizer
 *   does not lowercase);
 * - SigLIP v1 (SiglipTokenizer): what HF's SiglipTokenizer does before SentencePiece: lowercase
 *   (do_lower_case, default true), remove ASCII punctuation, collapse runs of whitespace to one space, trim
 *   (big_vision's canonicalisation the model was trained with); EOS and pad are both </s>.
 * Then both: encode without the tokenizer's own special tokens, append EOS, truncate so that EOS stays
 * last, right-pad with the pad id to the fixed length (64; SiglipProcessor users pad to max_length
 * because the text tower pools the last position).
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { AppError, ErrorCode } from '../errors.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Its shipped .d.ts re-exports through
 * extensionless relative paths, which NodeNext resolution cannot follow, so the class arrives untyped.
 */
interface HfTokenizer {
  token_to_id(token: string): number | undefined;
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
}
const HfTokenizerClass = Tokenizer as unknown as new (json: object, config: object) => HfTokenizer;

export interface TextTokenizer {
  readonly maxLength: number;
  readonly padId: number;
  readonly eosId: number;
  readonly convention: TextConvention;
  /** Row-major int64 [texts.length, maxLength] ids, and the matching attention mask (1 up to and including EOS). */
  encode(texts: string[]): { ids: BigInt64Array; mask: BigInt64Array };
  encodeOne(text: string): number[];
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export type TextConvention = 'siglip' | 'siglip2';

/** The family's text rules, from tokenizer_config.json: SiglipTokenizer is SigLIP v1; anything else (Gemma) SigLIP 2. */
export function textConventionOf(tokenizerConfig: Record<string, unknown>): TextConvention {
  const cls = tokenizerConfig['tokenizer_class'];
  return typeof cls === 'string' && /^SiglipTokenizer(Fast)?$/.test(cls) ? 'siglip' : 'siglip2';
}

// Python's string.punctuation: the ASCII punctuation HF's SiglipTokenizer.remove_punctuation deletes.
const ASCII_PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

/** The text as the family's tokenizer sees it before SentencePiece/BPE. */
export function normaliseText(text: string, convention: TextConvention, lowercase = true): string {
  const t = lowercase ? text.toLowerCase() : text;
  if (convention === 'siglip2') return t;
  return t.replace(ASCII_PUNCTUATION, '').replace(/\s+/g, ' ').trim();
}

export function createTokenizer(tokenizerJson: object, tokenizerConfig: Record<string, unknown>, maxLength = 64): TextTokenizer {
  const convention = textConventionOf(tokenizerConfig);
  // SigLIP 2 always lowercases; v1 unless its tokenizer_config turns do_lower_case off
  const lowercase = convention === 'siglip2' || tokenizerConfig['do_lower_case'] !== false;
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizerClass(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'tokenizer.json could not be loaded', { file: 'tokenizer.json' }, { cause: err });
  }
  const idOf = (key: string, fallback: string): number => {
    const name = tokenName(tokenizerConfig[key]) ?? fallback;
    const id = tok.token_to_id(name);
    if (id === undefined) {
      throw new AppError(ErrorCode.MODEL_UNAVAILABLE, `tokenizer.json has no id for ${key} "${name}" (from tokenizer_config.json)`, {
        file: 'tokenizer.json',
      });
    }
    return id;
  };
  const eosId = idOf('eos_token', convention === 'siglip' ? '</s>' : '<eos>');
  const padId = idOf('pad_token', convention === 'siglip' ? '</s>' : '<pad>');
  const bosId = tokenizerConfig['add_bos_token'] === true ? idOf('bos_token', '<bos>') : undefined;

  const encodeWithLength = (text: string): { seq: number[]; length: number } => {
    const ids = tok.encode(normaliseText(text, convention, lowercase), { add_special_tokens: false }).ids;
    const head = bosId === undefined ? [] : [bosId];
    const room = maxLength - head.length - 1;
    const body = ids.length > room ? ids.slice(0, room) : ids;
    const seq = [...head, ...body, eosId];
    const length = seq.length;
    while (seq.length < maxLength) seq.push(padId);
    return { seq, length };
  };
  const encodeOne = (text: string) => encodeWithLength(text).seq;
  return {
    maxLength,
    padId,
    eosId,
    convention,
    encodeOne,
    encode(texts: string[]) {
      const ids = new BigInt64Array(texts.length * maxLength);
      const mask = new BigInt64Array(texts.length * maxLength);
      texts.forEach((t, i) => {
        const { seq, length } = encodeWithLength(t);
        for (let j = 0; j < maxLength; j++) {
          ids[i * maxLength + j] = BigInt(seq[j]!);
          mask[i * maxLength + j] = j < length ? 1n : 0n;
        }
      });
      return { ids, mask };
    },
  };
}
