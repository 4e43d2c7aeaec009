/**
 * Model directory in the Hugging Face ONNX-export layout (as in onnx-community/siglip2-base-patch16-224-ONNX):
 *
 *   config.json  preprocessor_config.json  tokenizer.json  tokenizer_config.json  [special_tokens_map.json]
 *   onnx/vision_model{_variant}.onnx  onnx/text_model{_variant}.onnx  [onnx/model.onnx]
 *
 * The engine opens the directory it is given (src/hub/ says where a model's files are and which files make
 * a variant). Reads and validates the JSON files as the hub has them: config.json in transformers' short
 * form (save_pretrained leaves out every value equal to the class default, so google/siglip2-base-patch16-224's
 * config names no hidden_size, image_size or patch_size), read with the classes' defaults. The ONNX graphs
 * are validated by the worker when it opens them (tensor names, dtypes, and the dimension read here
 * against the graph's output). Every failure is a MODEL_UNAVAILABLE naming the file and what was expected.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import { deriveModelId, modelIdFor } from '../hub/ids.js';
import { variantFilesIn, type ExecutionProvider, type VariantFiles } from '../hub/variants.js';
import { findCalibration, type Calibration } from './calibration.js';
import { expectedProvider, type ProviderName } from './providers.js';
import { isSupportedResample, PIL_RESAMPLE } from './resize.js';
export { modelIdFor };
export type { ExecutionProvider, VariantFiles };

/**
 * transformers' defaults for what the short-form config.json leaves out (SiglipVisionConfig /
 * SiglipTextConfig in models/siglip/configuration_siglip.py; Siglip2's are the same for these fields):
 * a value the file does not name is this one.
 */
export const SIGLIP_CONFIG_DEFAULTS = {
  vision: { hidden_size: 768, image_size: 224, patch_size: 16 },
  // projection_size defaults to hidden_size (the text head projects to the width of the tower)
  text: { hidden_size: 768, max_position_embeddings: 64 },
} as const;

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
  /** PIL resample code from the config (2 = BILINEAR for SigLIP 2, 3 = BICUBIC for SigLIP v1): the filter resize.ts applies, as Pillow does. */
  resample: number;
  /**
   * SigLIP 2 NaFlex (Siglip2ImageProcessor): patches at the image's own aspect ratio (naflex.ts);
   * width/height are then only the nominal square of the same patch budget (info, inputSize()).
   */
  naflex?: { patchSize: number; maxNumPatches: number };
}

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
  /** Where the calibration came from (calibration.ts), or why there is none (matchProbability is then null). */
  calibration: { source: string } | { reason: string };
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

function resampleOf(pp: Record<string, unknown>): number {
  const resample = num(pp['resample']) ?? PIL_RESAMPLE.BILINEAR;
  if (!isSupportedResample(resample)) {
    throw unavailable(
      `preprocessor_config.json: resample ${resample} is not a filter this engine reproduces (BILINEAR 2, BICUBIC 3, LANCZOS 1, BOX 4, HAMMING 5)`,
      { file: 'preprocessor_config.json' },
    );
  }
  return resample;
}

export function parsePreprocessorConfig(pp: Record<string, unknown>, fallbackSize?: number): PreprocessSpec {
  const processor = typeof pp['image_processor_type'] === 'string' ? pp['image_processor_type'] : '';
  if (/^Siglip2ImageProcessor/.test(processor) || pp['max_num_patches'] !== undefined) {
    // the processor's defaults where the file leaves them out: 16-px patches, 256 of them
    const patchSize = num(pp['patch_size']) ?? 16;
    const maxNumPatches = num(pp['max_num_patches']) ?? 256;
    if (!Number.isInteger(patchSize) || patchSize < 1 || !Number.isInteger(maxNumPatches) || maxNumPatches < 1) {
      throw unavailable('preprocessor_config.json: patch_size and max_num_patches must be positive integers', {
        file: 'preprocessor_config.json',
      });
    }
    const side = patchSize * Math.floor(Math.sqrt(maxNumPatches));
    return {
      width: side,
      height: side,
      doResize: pp['do_resize'] !== false,
      doRescale: pp['do_rescale'] !== false,
      rescaleFactor: num(pp['rescale_factor']) ?? 1 / 255,
      doNormalize: pp['do_normalize'] !== false,
      mean: triple(pp['image_mean'], 'image_mean', 0.5),
      std: triple(pp['image_std'], 'image_std', 0.5),
      resample: resampleOf(pp),
      naflex: { patchSize, maxNumPatches },
    };
  }
  const size = obj(pp['size']);
  let width = num(size['width']);
  let height = num(size['height']);
  const shortest = num(size['shortest_edge']);
  if ((width === undefined || height === undefined) && shortest !== undefined) width = height = shortest;
  if ((width === undefined || height === undefined) && typeof pp['size'] === 'number') width = height = pp['size'];
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
    resample: resampleOf(pp),
  };
}

export interface LoadOptions {
  /** The user's calibration for this model (EMBEDDING_LOGIT_SCALE / _BIAS), ahead of what the directory says. */
  calibration?: Calibration;
}

export async function loadModelDir(
  dirArg: string,
  variantArg?: string,
  provider: ProviderName = 'auto',
  opts: LoadOptions = {},
): Promise<ModelFiles> {
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
  const defaults = SIGLIP_CONFIG_DEFAULTS;
  // the embedding dimension: the vision tower's width (its pooling head keeps it), the class default when
  // the short form leaves it out; the worker checks it against the graph's own output shape
  const dimension = num(vision['hidden_size']) ?? num(config['projection_dim']) ?? defaults.vision.hidden_size;
  const textDim = num(text['projection_size']) ?? num(text['hidden_size']) ?? defaults.text.hidden_size;
  if (textDim !== dimension) {
    throw unavailable(
      `config.json: text embedding size ${textDim} (text_config.projection_size) differs from image embedding size ${dimension} (vision_config.hidden_size)`,
      { file: 'config.json' },
    );
  }
  const visionImageSize = num(vision['image_size']) ?? defaults.vision.image_size;
  const preprocess = parsePreprocessorConfig(pp, visionImageSize);
  if (!preprocess.naflex && (preprocess.width !== visionImageSize || preprocess.height !== visionImageSize)) {
    throw unavailable(
      `preprocessor_config.json size ${preprocess.width}×${preprocess.height} differs from config.json vision_config.image_size ${visionImageSize}`,
      { file: 'preprocessor_config.json' },
    );
  }
  const files = await variantFilesIn(dir, variantArg, expectedProvider(provider));
  const variant = files.variant;
  const visionModelPath = await requireFile(dir, files.visionModelPath.slice(dir.length + 1), 'the image tower');
  const textModelPath = await requireFile(dir, files.textModelPath.slice(dir.length + 1), 'the text tower');
  let fetchedFrom: string | null = null;
  try {
    const source = JSON.parse(await readFile(join(dir, '.source.json'), 'utf8')) as { repo?: string };
    fetchedFrom = source.repo ?? null;
  } catch {
    /* not fetched by us */
  }
  // One derivation of model ids for the whole service (src/hub/ids.ts), so lookups by reference agree;
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
      : defaults.text.max_position_embeddings);
  const calibration = await findCalibration({
    dir,
    config,
    repoId: baseModelId,
    ...(opts.calibration ? { override: opts.calibration } : {}),
  });
  return {
    dir,
    modelId,
    baseModelId,
    variant,
    ...(files.autoVariants ? { autoVariants: files.autoVariants } : {}),
    visionModelPath,
    textModelPath,
    dimension,
    preprocess,
    tokenizerJson,
    tokenizerConfig,
    textMaxLength,
    ...('reason' in calibration
      ? { calibration: { reason: calibration.reason } }
      : { logitScale: calibration.logitScale, logitBias: calibration.logitBias, calibration: { source: calibration.source } }),
  };
}
