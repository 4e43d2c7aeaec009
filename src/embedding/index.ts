/**
 * In-process SigLIP 2 embedding engine.
 *
 *   bytes ─► images/decode (limits, EXIF, first frame, alpha) ─► resize S×S + normalise (preprocess.ts)
 *   text  ─► lowercase + tokenizer.json + EOS + pad to 64 (tokenizer.ts)
 *         ─► micro-batcher (batcher.ts) ─► worker pool (pool.ts; one ORT session per tower per worker)
 *         ─► pooler_output, L2-normalised
 *
 * Knows nothing of GraphQL or SQL. Errors are AppErrors (INVALID_IMAGE, IMAGE_TOO_LARGE,
 * MODEL_UNAVAILABLE, EMBEDDING_FAILED, BAD_USER_INPUT).
 */
import { availableParallelism } from 'node:os';
import { AppError, ErrorCode } from '../errors.js';
import type { ImageLimits } from '../images/decode.js';
import { MicroBatcher } from './batcher.js';
import { DEFAULT_MODEL_REPO, modelCachePath } from './hub-paths.js';
import { loadModelDir, modelIdFor, type ModelFiles } from './model-dir.js';
import { WorkerPool, type Logger, type WorkerMemory } from './pool.js';
import { preprocessImage } from './preprocess.js';
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
  maxImageBytes: number;
  maxImagePixels: number;
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
  /** L2-normalised image embeddings, in input order. Rejects with INVALID_IMAGE / IMAGE_TOO_LARGE (details.index) on a bad input. */
  embedImages(buffers: Buffer[]): Promise<Float32Array[]>;
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
    maxImageBytes: 20 * 1024 * 1024,
    maxImagePixels: 40_000_000,
  };
}

function validateOptions(o: EmbedderOptions): void {
  const bad = (m: string) => new AppError(ErrorCode.BAD_USER_INPUT, `Invalid embedder option: ${m}`);
  if (!o.modelDir) throw bad('modelDir is required');
  if (!PROVIDERS.includes(o.provider)) throw bad(`provider must be one of ${PROVIDERS.join(', ')}`);
  for (const k of ['workers', 'intraOpThreads', 'maxBatch', 'maxImageBytes', 'maxImagePixels'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw bad(`${k} must be a positive integer`);
  }
  if (!(Number.isFinite(o.maxWaitMs) && o.maxWaitMs >= 0)) throw bad('maxWaitMs must be ≥ 0');
}

/** Small async semaphore bounding concurrent image decodes (sharp work on the libuv pool). */
class Limiter {
  private active = 0;
  private waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

type Payload = Float32Array | { ids: BigInt64Array; mask: BigInt64Array };

class EmbedderImpl implements Embedder {
  private decodeLimiter = new Limiter(Math.max(2, availableParallelism()));
  constructor(
    private readonly opts: EmbedderOptions,
    private readonly files: ModelFiles,
    private readonly tokenizer: TextTokenizer,
    readonly pool: WorkerPool,
    readonly batcher: MicroBatcher<Kind, Payload, Float32Array>,
    private readonly provider: string,
  ) {}

  private get limits(): ImageLimits {
    return { maxImageBytes: this.opts.maxImageBytes, maxImagePixels: this.opts.maxImagePixels };
  }

  async embedImages(buffers: Buffer[]): Promise<Float32Array[]> {
    if (!Array.isArray(buffers)) throw new AppError(ErrorCode.BAD_USER_INPUT, 'embedImages expects an array of buffers');
    const tensors = await Promise.all(
      buffers.map((b, index) =>
        this.decodeLimiter
          .run(() => preprocessImage(b, this.files.preprocess, this.limits))
          .catch((err: unknown) => {
            if (err instanceof AppError) {
              throw new AppError(
                err.code,
                buffers.length > 1 ? `Image ${index}: ${err.message}` : err.message,
                { ...err.details, index },
                {
                  cause: err.cause,
                },
              );
            }
            throw new AppError(ErrorCode.INVALID_IMAGE, `Image ${index} could not be decoded`, { index }, { cause: err });
          }),
      ),
    );
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

  /** Per-worker memory figures (bench/diagnostics). */
  workerMemory(): Promise<WorkerMemory[]> {
    return this.pool.memory();
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
