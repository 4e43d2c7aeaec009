/**
 * In-process SigLIP 2 embedding engine.
 *
 *   pixels (8-bit RGB at inputSize(), decoded and bounded by images/) ─► normalise (preprocess.ts)
 *   text  ─► lowercase + tokenizer.json + EOS + pad to 64 (tokenizer.ts)
 *         ─► micro-batcher (batcher.ts) ─► worker pool (pool.ts; one ORT session per tower per worker)
 *         ─► pooler_output, L2-normalised
 *
 * Knows nothing of GraphQL, SQL or encoded images (images/ decodes them with its limits). Errors are
 * AppErrors (MODEL_UNAVAILABLE, EMBEDDING_FAILED, BAD_USER_INPUT).
 */
import { availableParallelism } from 'node:os';
import { AppError, ErrorCode } from '../errors.js';
import { MicroBatcher } from './batcher.js';
import { DEFAULT_MODEL_REPO, modelCachePath } from './hub-paths.js';
import { loadModelDir, modelIdFor, type ModelFiles } from './model-dir.js';
import { WorkerPool, type Logger } from './pool.js';
import { resizeForModel, rgbToTensor } from './preprocess.js';
import type { Kind } from './protocol.js';
import { PROVIDERS, type ProviderName } from './providers.js';
import { createTokenizer, type TextTokenizer } from './tokenizer.js';

export type { ProviderName } from './providers.js';
export { loadModelDir } from './model-dir.js';
export { DEFAULT_MODEL_REPO, defaultModelCacheDir, modelCachePath } from './hub-paths.js';
export { ensureModel, fetchModel, type FetchOptions } from './hub.js';
export { runModelCommand } from './cli.js';

export interface EmbedderOptions {
  modelDir: string;
  provider: ProviderName;
  workers: number;
  intraOpThreads: number;
  maxBatch: number;
  maxWaitMs: number;
  /**
   * ONNX file variant: undefined/'fp32' → onnx/vision_model.onnx; 'fp16' → onnx/vision_model_fp16.onnx; …
   * 'auto' (the default): the fastest present for the execution provider (int8 on CPU, fp16 on CUDA).
   */
  variant?: string;
}

/** Decoded pixels: interleaved 8-bit RGB, row-major, `data.length === width * height * 3`. */
export interface RgbPixels {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface EmbedderInfo {
  modelId: string;
  dimension: number;
  imageSize: number;
  provider: string;
  /**
   * The ONNX variant loaded ('fp32', 'quantized', 'fp16', …), after resolving 'auto'. Optional only so
   * that stand-in embedders (tests) need not report one; this engine always does.
   */
  variant?: string;
  workers: number;
  intraOpThreads: number;
  maxBatch: number;
  maxWaitMs: number;
  logitScale?: number;
  logitBias?: number;
}

export interface Embedder {
  /**
   * L2-normalised image embeddings, in input order, of decoded RGB pixels of any size (images/embed.ts
   * decodes and bounds encoded bytes); each is squashed to inputSize() exactly as Pillow's BILINEAR
   * does (preprocess.ts). Rejects with BAD_USER_INPUT (details.index) on a malformed buffer.
   */
  embedImages(images: RgbPixels[]): Promise<Float32Array[]>;
  /** The pixel size the vision tower takes (SigLIP 2 squashes to S×S). */
  inputSize(): { width: number; height: number };
  /**
   * SigLIP's calibrated probability that a text matches an image with this cosine similarity,
   * sigmoid(exp(logit_scale)·score + logit_bias); null when the model's config.json lacks them.
   */
  matchProbability(score: number): number | null;
  /** L2-normalised text embeddings, in input order. */
  embedTexts(texts: string[]): Promise<Float32Array[]>;
  info(): EmbedderInfo;
  close(): Promise<void>;
}

type LogLike = { info: Function; warn: Function; error: Function };

export const MAX_TEXT_CHARS = 2000;

export function defaultEmbedderOptions(): EmbedderOptions {
  return {
    modelDir: modelCachePath(DEFAULT_MODEL_REPO),
    provider: 'auto',
    workers: 1,
    intraOpThreads: Math.max(1, availableParallelism()),
    maxBatch: 16,
    maxWaitMs: 5,
    variant: 'auto',
  };
}

function validateOptions(o: EmbedderOptions): void {
  const bad = (m: string) => new AppError(ErrorCode.BAD_USER_INPUT, `Invalid embedder option: ${m}`);
  if (!o.modelDir) throw bad('modelDir is required');
  if (!PROVIDERS.includes(o.provider)) throw bad(`provider must be one of ${PROVIDERS.join(', ')}`);
  for (const k of ['workers', 'intraOpThreads', 'maxBatch'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw bad(`${k} must be a positive integer`);
  }
  if (!(Number.isFinite(o.maxWaitMs) && o.maxWaitMs >= 0)) throw bad('maxWaitMs must be ≥ 0');
}

type Payload = Float32Array | { ids: BigInt64Array; mask: BigInt64Array };

class EmbedderImpl implements Embedder {
  constructor(
    private readonly opts: EmbedderOptions,
    private readonly files: ModelFiles,
    private readonly tokenizer: TextTokenizer,
    readonly pool: WorkerPool,
    readonly batcher: MicroBatcher<Kind, Payload, Float32Array>,
    private readonly provider: string,
  ) {}

  inputSize(): { width: number; height: number } {
    return { width: this.files.preprocess.width, height: this.files.preprocess.height };
  }

  matchProbability(score: number): number | null {
    const { logitScale, logitBias } = this.files;
    if (logitScale === undefined || logitBias === undefined) return null;
    return 1 / (1 + Math.exp(-(score * Math.exp(logitScale) + logitBias)));
  }

  async embedImages(images: RgbPixels[]): Promise<Float32Array[]> {
    if (!Array.isArray(images)) throw new AppError(ErrorCode.BAD_USER_INPUT, 'embedImages expects an array of images');
    const spec = this.files.preprocess;
    const tensors = images.map((img, index) => {
      if (!(img.width >= 1 && img.height >= 1) || img.data.length !== img.width * img.height * 3) {
        throw new AppError(
          ErrorCode.BAD_USER_INPUT,
          `Image ${index} is not ${img.width}×${img.height} RGB (${img.data.length} bytes)`,
          { index },
        );
      }
      return rgbToTensor(resizeForModel(img, spec), spec.width, spec.height, spec);
    });
    return Promise.all(tensors.map((t) => this.batcher.submit('image', t)));
  }

  async embedTexts(texts: string[]): Promise<Float32Array[]> {
    if (!Array.isArray(texts)) throw new AppError(ErrorCode.BAD_USER_INPUT, 'embedTexts expects an array of strings');
    const rows = texts.map((t, index) => {
      if (typeof t !== 'string') throw new AppError(ErrorCode.BAD_USER_INPUT, `Text ${index} is not a string`, { index });
      if (t.length > MAX_TEXT_CHARS) {
        throw new AppError(ErrorCode.BAD_USER_INPUT, `Text ${index} is longer than ${MAX_TEXT_CHARS} characters`, { index });
      }
      return this.tokenizer.encode([t]);
    });
    return Promise.all(rows.map((r) => this.batcher.submit('text', r)));
  }

  info(): EmbedderInfo {
    const out: EmbedderInfo = {
      modelId: this.files.modelId,
      dimension: this.files.dimension,
      imageSize: this.files.preprocess.width,
      provider: this.provider,
      variant: this.files.variant ?? 'fp32',
      workers: this.opts.workers,
      intraOpThreads: this.opts.intraOpThreads,
      maxBatch: this.opts.maxBatch,
      maxWaitMs: this.opts.maxWaitMs,
    };
    if (this.files.logitScale !== undefined) out.logitScale = this.files.logitScale;
    if (this.files.logitBias !== undefined) out.logitBias = this.files.logitBias;
    return out;
  }

  async close(): Promise<void> {
    this.batcher.close();
    await this.pool.close();
  }
}

function toLogger(log?: LogLike): Logger {
  const noop = () => {};
  if (!log) return { info: noop, warn: noop, error: noop };
  return {
    info: (...a: unknown[]) => log.info(...a),
    warn: (...a: unknown[]) => log.warn(...a),
    error: (...a: unknown[]) => log.error(...a),
  };
}

export async function createEmbedder(opts: EmbedderOptions, log?: LogLike): Promise<Embedder> {
  validateOptions(opts);
  const logger = toLogger(log);
  if (opts.workers * opts.intraOpThreads > availableParallelism()) {
    logger.warn(
      { workers: opts.workers, intraOpThreads: opts.intraOpThreads, cores: availableParallelism() },
      'embedding: workers × intraOpThreads exceeds the core count; threads will compete (set intraOpThreads ≈ cores / workers)',
    );
  }
  let files = await loadModelDir(opts.modelDir, opts.variant, opts.provider);
  const tokenizer = createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.textMaxLength);
  const pool = new WorkerPool(
    {
      visionModelPath: files.visionModelPath,
      textModelPath: files.textModelPath,
      ...(files.autoVariants ? { autoVariants: files.autoVariants } : {}),
      provider: opts.provider,
      intraOpThreads: opts.intraOpThreads,
      dimension: files.dimension,
      imageWidth: files.preprocess.width,
      imageHeight: files.preprocess.height,
      textMaxLength: tokenizer.maxLength,
      warmup: true,
    },
    opts.workers,
    logger,
  );
  const ready = await pool.start();
  if (ready.fallbackReason) {
    logger.warn(
      { requested: opts.provider, provider: ready.provider, reason: ready.fallbackReason },
      'embedding: GPU not available, using CPU',
    );
  }
  if (files.autoVariants) {
    // the variant follows the provider that initialised (CUDA may have fallen back to CPU)
    const chosen = files.autoVariants[ready.provider];
    files = { ...files, ...chosen, variant: ready.variant, modelId: modelIdFor(files.baseModelId, ready.variant) };
    logger.info(
      { variant: ready.variant ?? 'fp32', provider: ready.provider, file: chosen.visionModelPath.split(/[\\/]/).pop() },
      'embedding: EMBEDDING_VARIANT=auto chose the fastest variant present for this execution provider',
    );
  }
  const imageElems = 3 * files.preprocess.width * files.preprocess.height;
  const L = tokenizer.maxLength;
  const dim = files.dimension;
  const batcher = new MicroBatcher<Kind, Payload, Float32Array>(
    {
      free: () => pool.free(),
      alive: () => pool.alive(),
      async run(kind, payloads) {
        const B = payloads.length;
        let out: Float32Array;
        if (kind === 'image') {
          const data = new Float32Array(B * imageElems);
          payloads.forEach((p, i) => data.set(p as Float32Array, i * imageElems));
          out = await pool.run('image', B, data);
        } else {
          const ids = new BigInt64Array(B * L);
          const mask = new BigInt64Array(B * L);
          payloads.forEach((p, i) => {
            const t = p as { ids: BigInt64Array; mask: BigInt64Array };
            ids.set(t.ids, i * L);
            mask.set(t.mask, i * L);
          });
          out = await pool.run('text', B, ids, mask);
        }
        return Array.from({ length: B }, (_, i) => out.slice(i * dim, (i + 1) * dim));
      },
    },
    opts.maxBatch,
    opts.maxWaitMs,
  );
  pool.onChange = () => batcher.pump();
  logger.info(
    {
      modelId: files.modelId,
      variant: files.variant ?? 'fp32',
      dimension: dim,
      provider: ready.provider,
      workers: opts.workers,
      intraOpThreads: opts.intraOpThreads,
    },
    'embedding engine ready',
  );
  return new EmbedderImpl(opts, files, tokenizer, pool, batcher, ready.provider);
}
