/**
 * Which graph files of a model make up a variant, and which variant `EMBEDDING_VARIANT=auto` takes: one
 * answer for the hub fetch (which files to download from a listing) and for the engine (which files of a
 * directory to open), so the two can never disagree.
 *
 * The layout is the hub's ONNX exports' (onnx-community/*-ONNX, written by transformers.js's conversion
 * and quantisation scripts): onnx/vision_model{_variant}.onnx and onnx/text_model{_variant}.onnx, where
 * the variant is fp16, quantized (q8), int8, uint8, q4, bnb4, q4f16…; the fp32 files have no suffix.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';

/** The execution providers a variant is chosen for (the engine resolves `auto` to one of them). */
export type ExecutionProvider = 'cuda' | 'webgpu' | 'cpu';

/** The graph files of one variant. */
export interface VariantFiles {
  /** undefined: the fp32 files (onnx/vision_model.onnx, onnx/text_model.onnx). */
  variant?: string;
  visionModelPath: string;
  textModelPath: string;
}

const unavailable = (message: string, details?: Record<string, unknown>) => new AppError(ErrorCode.MODEL_UNAVAILABLE, message, details);

/** onnx/<name>.onnx, or onnx/<name>_<variant>.onnx (fp16, quantized, q8, int8, uint8, q4, bnb4, …). */
export function onnxFileName(name: 'vision_model' | 'text_model', variant?: string): string {
  if (variant === 'auto') throw unavailable('onnxFileName: resolve the variant "auto" first');
  const v = variant && variant !== 'fp32' ? `_${variant}` : '';
  if (variant && !/^[a-z0-9_]+$/i.test(variant)) throw unavailable(`Invalid model variant: ${variant}`);
  return `onnx/${name}${v}.onnx`;
}

/**
 * `EMBEDDING_VARIANT=auto`: the fastest variant for each execution provider, first present wins. On CPU
 * the 8-bit exports (dynamic 8-bit weights, uint8 activations: ONNX Runtime runs them on the CPU's integer
 * dot-product units): `_quantized` (q8) first, then `_int8` and `_uint8`. transformers.js's quantiser writes
 * `_int8`'s patch Conv as a ConvInteger with signed weights, which older ONNX Runtime CPU builds could not
 * run (u8×u8 only; that script gives `_quantized` unsigned weights wherever a graph has a Conv for that
 * reason); the pinned onnxruntime-node (1.30) runs it, which test/unit/embedding/checkpoints.test.ts checks
 * on a file quantised that way, and the engine refuses such a file at load, naming `quantized`, on a build
 * that cannot. On CUDA fp16 (tensor cores). 'fp32' closes each list; a directory with none of them falls
 * back to any variant present.
 */
export const AUTO_VARIANT_ORDER: Record<ExecutionProvider, readonly string[]> = {
  cpu: ['quantized', 'int8', 'uint8', 'fp32'],
  cuda: ['fp16', 'fp32'],
  webgpu: ['fp32'],
};

/** The last resort of `auto` when none of a provider's variants is there. */
const FALLBACK_VARIANTS: readonly string[] = ['fp32', 'quantized', 'int8', 'uint8', 'fp16'];

/**
 * Pick the variant for `provider` among those `present` (a predicate on a variant name, 'fp32' for the
 * plain files): the first of AUTO_VARIANT_ORDER present, else the first of `fallbacks` present.
 */
export function pickAutoVariant(
  provider: ExecutionProvider,
  present: (variant: string) => boolean,
  fallbacks: readonly string[] = FALLBACK_VARIANTS,
): string | undefined {
  return [...AUTO_VARIANT_ORDER[provider], ...fallbacks].find(present);
}

const ALL_AUTO_CANDIDATES = [...new Set([...Object.values(AUTO_VARIANT_ORDER).flat(), ...FALLBACK_VARIANTS])];

async function isFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0;
  } catch {
    return false;
  }
}

function filesOf(dir: string, v: string | undefined): VariantFiles {
  return {
    variant: v === 'fp32' ? undefined : v,
    visionModelPath: join(dir, onnxFileName('vision_model', v)),
    textModelPath: join(dir, onnxFileName('text_model', v)),
  };
}

/**
 * The graph files of a model directory for a variant. With 'auto', the choice for each provider
 * (`autoVariants`; the engine knows the provider only once one initialised, and `auto` may fall back from
 * CUDA to CPU) and the files for `expected`, the provider expected to initialise. Files are not checked
 * here for a named variant: the engine's requireFile names the missing one.
 */
export async function variantFilesIn(
  dir: string,
  variant: string | undefined,
  expected: ExecutionProvider,
): Promise<VariantFiles & { autoVariants?: Record<ExecutionProvider, VariantFiles> }> {
  if (variant !== 'auto') return filesOf(dir, variant);
  const present = new Map<string, boolean>();
  for (const v of ALL_AUTO_CANDIDATES) {
    present.set(v, (await isFile(join(dir, onnxFileName('vision_model', v)))) && (await isFile(join(dir, onnxFileName('text_model', v)))));
  }
  // none present: the fp32 names, which the engine's missing-file error then names
  const pick = (p: ExecutionProvider) => filesOf(dir, pickAutoVariant(p, (name) => present.get(name) === true) ?? 'fp32');
  const autoVariants = { cpu: pick('cpu'), cuda: pick('cuda'), webgpu: pick('webgpu') };
  return { ...autoVariants[expected], autoVariants };
}

/** The JSON files every model directory needs beside its graphs (special_tokens_map.json is optional). */
export const REQUIRED_JSON = ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json'];
/** Fetched when the repository has them: read by the engine where present (tokens, calibration). */
export const OPTIONAL_JSON = ['special_tokens_map.json'];

/** A file of a repository listing, as the hub client reports it. */
export interface RemoteFile {
  path: string;
  size: number;
  /** sha256 (LFS) or git blob sha1 (regular files). */
  hash?: { algo: 'sha256' | 'gitsha1'; hex: string };
}

/** Which files of a repository listing make up the model directory for a variant. */
export function selectFiles(listing: RemoteFile[], variantArg: string | undefined, expected: ExecutionProvider): RemoteFile[] {
  const byPath = new Map(listing.map((f) => [f.path, f]));
  // 'auto': only the files of the variant the engine will open for the expected provider (the real text
  // tower alone is ~1.1 GB in fp32), i.e. the q8 files on CPU when the repository has them
  const variant =
    variantArg === 'auto'
      ? pickAutoVariant(expected, (v) => byPath.has(onnxFileName('vision_model', v)) && byPath.has(onnxFileName('text_model', v)))
      : variantArg;
  const wanted = [...REQUIRED_JSON, onnxFileName('vision_model', variant), onnxFileName('text_model', variant)];
  const missing = wanted.filter((p) => !byPath.has(p));
  if (missing.length) {
    const variants = [
      ...new Set(
        listing
          .map((f) => /^onnx\/vision_model(?:_(\w+))?\.onnx$/.exec(f.path))
          .filter((m): m is RegExpExecArray => !!m)
          .map((m) => m[1] ?? 'fp32'),
      ),
    ];
    throw unavailable(`Repository lacks ${missing.join(', ')}${variants.length ? ` (available variants: ${variants.join(', ')})` : ''}`, {
      missing,
    });
  }
  const out = [...wanted, ...OPTIONAL_JSON.filter((p) => byPath.has(p))].map((p) => byPath.get(p)!);
  // external-data files of the chosen graphs (large exports), e.g. onnx/text_model.onnx_data
  for (const f of listing) {
    for (const g of wanted.slice(REQUIRED_JSON.length)) {
      if (f.path.startsWith(`${g}_data`) || f.path.startsWith(`${g}.data`)) out.push(f);
    }
  }
  return out;
}

/** Whether a directory holds every file a variant needs (the JSON files and both graphs): a whole snapshot. */
export async function hasVariantFiles(dir: string, variant: string | undefined, expected: ExecutionProvider): Promise<boolean> {
  for (const name of REQUIRED_JSON) if (!(await isFile(join(dir, name)))) return false;
  const files = await variantFilesIn(dir, variant, expected);
  return (await isFile(files.visionModelPath)) && (await isFile(files.textModelPath));
}
