/**
 * Model directory in the Hugging Face ONNX-export layout (as in onnx-community/siglip2-base-patch16-224-ONNX):
 *
 *   config.json  preprocessor_config.json  tokenizer.json  tokenizer_config.json
 *   onnx/vision_model{_variant}.onnx  onnx/text_model{_variant}.onnx
 *
 * Reads and validates the JSON files; the ONNX graphs themselves are validated by the worker when it opens
 * them (tensor names, dtypes, dimension). Every failure is a MODEL_UNAVAILABLE naming the file and what
 * was expected.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import { deriveModelId, modelIdFor } from '../models/ids.js';
export { modelIdFor };
import { cudaProviderInstalled, type ProviderName } from './providers.js';

export interface PreprocessSpec {
  /** Target width/height (SigLIP 2 FixRes squashes to S×S). */
  width: number;
  height: number;
  doResize: boolean;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
  /** PIL resample code from the config (2 = bilinear); informational: Pillow-identical bilinear (resize.ts) is used. */
  resample: number;
}

/** The graph files of one variant. */
export interface VariantFiles {
  /** undefined: the fp32 files (onnx/vision_model.onnx, onnx/text_model.onnx). */
  variant?: string;
  visionModelPath: string;
  textModelPath: string;
}

export type ExecutionProvider = 'cuda' | 'webgpu' | 'cpu';

export interface ModelFiles {
  dir: string;
  modelId: string;
  /** The model id without the variant suffix (modelIdFor() adds it). */
  baseModelId: string;
  variant?: string;
  /**
   * With variant 'auto': the variant chosen for each execution provider (the worker knows the provider
   * only once it has initialised one; `auto` may fall back from CUDA to CPU). visionModelPath,
   * textModelPath, variant and modelId describe the choice for the provider expected to initialise.
   */
  autoVariants?: Record<ExecutionProvider, VariantFiles>;
  visionModelPath: string;
  textModelPath: string;
  dimension: number;
  preprocess: PreprocessSpec;
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
  textMaxLength: number;
  logitScale?: number;
  logitBias?: number;
}

const unavailable = (message: string, details?: Record<string, unknown>, cause?: unknown) =>
  new AppError(ErrorCode.MODEL_UNAVAILABLE, message, details, cause === undefined ? undefined : { cause });

async function readJson(dir: string, name: string): Promise<Record<string, unknown>> {
  const path = join(dir, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw unavailable(`Model file missing: ${name} (expected in model directory ${dir})`, { file: name, dir }, err);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw unavailable(`Model file ${name} is not a valid JSON object`, { file: name, dir }, err);
  }
}

async function requireFile(dir: string, rel: string, hint: string): Promise<string> {
  const path = join(dir, rel);
  try {
    const s = await stat(path);
    if (!s.isFile() || s.size === 0) throw new Error('empty or not a file');
  } catch (err) {
    throw unavailable(`Model file missing: ${rel} (${hint}) in model directory ${dir}`, { file: rel, dir }, err);
  }
  return path;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function triple(v: unknown, name: string, fallback: number): [number, number, number] {
  if (v === undefined || v === null) return [fallback, fallback, fallback];
  if (typeof v === 'number') return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number')) return v as [number, number, number];
  throw unavailable(`preprocessor_config.json: ${name} must be a number or three numbers`, { file: 'preprocessor_config.json' });
}

export function parsePreprocessorConfig(pp: Record<string, unknown>, fallbackSize?: number): PreprocessSpec {
  const size = obj(pp['size']);
  let width = num(size['width']);
  let height = num(size['height']);
  const shortest = num(size['shortest_edge']);
  if ((width === undefined || height === undefined) && shortest !== undefined) width = height = shortest;
  if ((width === undefined || height === undefined) && typeof pp['size'] === 'number') width = height = pp['size'] as number;
  if ((width === undefined || height === undefined) && fallbackSize) width = height = fallbackSize;
  if (!width || !height || width < 1 || height < 1) {
    throw unavailable('preprocessor_config.json: size.height/size.width missing (expected e.g. {"height":224,"width":224})', {
      file: 'preprocessor_config.json',
    });
  }
  if (pp['do_center_crop'] === true) {
    // SigLIP 2 FixRes never crops; a config asking for it is not the model this engine is built for.
    throw unavailable('preprocessor_config.json asks for do_center_crop; SigLIP 2 squashes to S×S without cropping', {
      file: 'preprocessor_config.json',
    });
  }
  return {
    width,
    height,
    doResize: pp['do_resize'] !== false,
    doRescale: pp['do_rescale'] !== false,
    rescaleFactor: num(pp['rescale_factor']) ?? 1 / 255,
    doNormalize: pp['do_normalize'] !== false,
    mean: triple(pp['image_mean'], 'image_mean', 0.5),
    std: triple(pp['image_std'], 'image_std', 0.5),
    resample: num(pp['resample']) ?? 2,
  };
}

/** onnx/<name>.onnx, or onnx/<name>_<variant>.onnx (fp16, quantized, q8, int8, uint8, q4, bnb4, …). */
export function onnxFileName(name: 'vision_model' | 'text_model', variant?: string): string {
  if (variant === 'auto') throw unavailable('onnxFileName: resolve the variant "auto" first (loadModelDir does)');
  const v = variant && variant !== 'fp32' ? `_${variant}` : '';
  if (variant && !/^[a-z0-9_]+$/i.test(variant)) throw unavailable(`Invalid model variant: ${variant}`);
  return `onnx/${name}${v}.onnx`;
}

/**
 * `EMBEDDING_VARIANT=auto`: the fastest variant for each execution provider, first present wins. On CPU
 * the int8 exports (dynamic int8 weights, uint8 activations: ONNX Runtime runs them on the CPU's integer
 * dot-product units, several times the fp32 rate); on CUDA fp16 (tensor cores); fp32 otherwise. 'fp32'
 * closes each list; a directory with none of them falls back to any variant present (see resolve below).
 */
export const AUTO_VARIANT_ORDER: Record<ExecutionProvider, readonly string[]> = {
  cpu: ['quantized', 'int8', 'uint8', 'fp32'],
  cuda: ['fp16', 'fp32'],
  webgpu: ['fp32'],
};

/** The provider `auto` is expected to initialise: CUDA where its libraries are installed, else CPU. */
export function expectedProvider(requested: ProviderName, cudaInstalled = cudaProviderInstalled): ExecutionProvider {
  if (requested !== 'auto') return requested;
  return cudaInstalled() === false ? 'cpu' : 'cuda';
}

/**
 * Pick the variant for `provider` among those `present` (a predicate on a variant name, 'fp32' for the
 * plain files): the first of AUTO_VARIANT_ORDER present, else the first of `fallbacks` present.
 */
export function pickAutoVariant(
  provider: ExecutionProvider,
  present: (variant: string) => boolean,
  fallbacks: readonly string[] = ['fp32', 'quantized', 'int8', 'uint8', 'fp16'],
): string | undefined {
  return [...AUTO_VARIANT_ORDER[provider], ...fallbacks].find(present);
}


async function isFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0;
  } catch {
    return false;
  }
}

export async function loadModelDir(dirArg: string, variantArg?: string, provider: ProviderName = 'auto'): Promise<ModelFiles> {
  const dir = resolve(dirArg);
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new Error('not a directory');
  } catch (err) {
    throw unavailable(`Model directory not found: ${dir}`, { dir }, err);
  }
  const config = await readJson(dir, 'config.json');
  const pp = await readJson(dir, 'preprocessor_config.json');
  const tokenizerJson = await readJson(dir, 'tokenizer.json');
  const tokenizerConfig = await readJson(dir, 'tokenizer_config.json');
  const vision = obj(config['vision_config']);
  const text = obj(config['text_config']);
  const dimension = num(vision['hidden_size']) ?? num(config['projection_dim']);
  if (!dimension) {
    throw unavailable('config.json: vision_config.hidden_size missing (the embedding dimension)', { file: 'config.json' });
  }
  const textDim = num(text['projection_size']) ?? num(text['hidden_size']);
  if (textDim !== undefined && textDim !== dimension) {
    throw unavailable(
      `config.json: text embedding size ${textDim} (text_config.projection_size) differs from image embedding size ${dimension} (vision_config.hidden_size)`,
      { file: 'config.json' },
    );
  }
  const preprocess = parsePreprocessorConfig(pp, num(vision['image_size']));
  const visionImage = num(vision['image_size']);
  if (visionImage !== undefined && (preprocess.width !== visionImage || preprocess.height !== visionImage)) {
    throw unavailable(
      `preprocessor_config.json size ${preprocess.width}×${preprocess.height} differs from config.json vision_config.image_size ${visionImage}`,
      { file: 'preprocessor_config.json' },
    );
  }
  let variant = variantArg;
  let autoVariants: Record<ExecutionProvider, VariantFiles> | undefined;
  if (variantArg === 'auto') {
    const present = new Map<string, boolean>();
    for (const v of new Set(Object.values(AUTO_VARIANT_ORDER).flat().concat(['fp16']))) {
      present.set(
        v,
        (await isFile(join(dir, onnxFileName('vision_model', v)))) && (await isFile(join(dir, onnxFileName('text_model', v)))),
      );
    }
    const pick = (p: ExecutionProvider): VariantFiles => {
      const v = pickAutoVariant(p, (name) => present.get(name) === true) ?? 'fp32'; // none present: requireFile below names fp32
      return {
        variant: v === 'fp32' ? undefined : v,
        visionModelPath: join(dir, onnxFileName('vision_model', v)),
        textModelPath: join(dir, onnxFileName('text_model', v)),
      };
    };
    autoVariants = { cpu: pick('cpu'), cuda: pick('cuda'), webgpu: pick('webgpu') };
    variant = autoVariants[expectedProvider(provider)].variant;
  }
  const visionModelPath = await requireFile(dir, onnxFileName('vision_model', variant), 'the image tower');
  const textModelPath = await requireFile(dir, onnxFileName('text_model', variant), 'the text tower');
  let fetchedFrom: string | null = null;
  try {
    const source = JSON.parse(await readFile(join(dir, '.source.json'), 'utf8')) as { repo?: string };
    fetchedFrom = source.repo ?? null;
  } catch {
    /* not fetched by us */
  }
  // One derivation of model ids for the whole service (src/models/ids.ts), so lookups by reference agree;
  // the variant suffix is added by modelIdFor, also when `auto` settles on a variant at load.
  const baseModelId = deriveModelId({
    dir,
    fetchedFrom,
    nameInConfig: typeof config['_name_or_path'] === 'string' ? config['_name_or_path'] : null,
  });
  const modelId = modelIdFor(baseModelId, variant);
  const textMaxLength =
    num(text['max_position_embeddings']) ??
    (num(tokenizerConfig['model_max_length']) !== undefined && (tokenizerConfig['model_max_length'] as number) <= 4096
      ? (tokenizerConfig['model_max_length'] as number)
      : 64);
  return {
    dir,
    modelId,
    baseModelId,
    variant,
    ...(autoVariants ? { autoVariants } : {}),
    visionModelPath,
    textModelPath,
    dimension,
    preprocess,
    tokenizerJson,
    tokenizerConfig,
    textMaxLength,
    logitScale: num(config['logit_scale']),
    logitBias: num(config['logit_bias']),
  };
}
