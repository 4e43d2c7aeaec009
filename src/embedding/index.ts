/**
 * In-process SigLIP 2 embedding engine.
 *
 *   pixels (8-bit RGB of any size, decoded and bounded by images/) ─► resize + normalise (preprocess.ts;
 *         NaFlex: aspect-preserving resize, patches, mask, spatial shape in naflex.ts), on a
 *         preprocessing thread for images over 320×320 (preprocess-pool.ts), inline for smaller ones
 *   text  ─► lowercase + tokenizer.json + EOS + pad to 64 (tokenizer.ts)
 *         ─► micro-batcher (batcher.ts) ─► worker pool (pool.ts; one ORT session per tower per worker)
 *         ─► pooler_output, L2-normalised
 *
 * Knows nothing of GraphQL, SQL or encoded images (images/ decodes them with its limits). Errors are
 * AppErrors (MODEL_UNAVAILABLE, EMBEDDING_FAILED, BAD_USER_INPUT).
 */
import { availableParallelism } from 'node:os';
import { AppError, ErrorCode } from '../errors.js';
import { metrics } from '../metrics/index.js';
import { MicroBatcher } from './batcher.js';
import type { Calibration } from './calibration.js';
import { loadModelDir, modelIdFor, type ModelFiles } from './model-dir.js';
import { WorkerPool, type Logger } from './pool.js';
import type { NaflexInput } from './naflex.js';
import { PreprocessPool } from './preprocess-pool.js';
import type { Kind } from './protocol.js';
import { PROVIDERS, type ProviderName } from './providers.js';
import { createTokenizer, type TextTokenizer } from './tokenizer.js';

export type { ProviderName } from './providers.js';
export { loadModelDir } from './model-dir.js';

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
  /**
   * Threads that resize and normalise images larger than 320×320 off the main thread (default 1; see
   * preprocess-pool.ts). One keeps up with the inference of a CPU tower many times over.
   */
  preprocessWorkers?: number;
  /** The user's logit_scale/logit_bias for this model, ahead of what its directory says (calibration.ts). */
  calibration?: Calibration;
  /**
   * The nice value of the inference and preprocessing threads (COMPUTE_THREAD_NICE; 0 or absent: the
   * process's own). Serving comes first: admission/thread-priority.ts.
   */
  threadNice?: number;
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
  /** True for a NaFlex model (aspect-preserving patch grid): its input has no one size (inputSize is nominal). */
  naflex?: boolean;
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

// method syntax: parameters are checked bivariantly, so pino loggers and the tests' recorders both fit
type LogLike = { info(...args: unknown[]): unknown; warn(...args: unknown[]): unknown; error(...args: unknown[]): unknown };

export const MAX_TEXT_CHARS = 2000;

/** Everything but the directory (src/hub/ says where a model's files are). */
export function defaultEmbedderOptions(): Omit<EmbedderOptions, 'modelDir'> {
  return {
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
  if (o.preprocessWorkers !== undefined && !(Number.isInteger(o.preprocessWorkers) && o.preprocessWorkers >= 1)) {
    throw bad('preprocessWorkers must be a positive integer');
  }
  if (!(Number.isFinite(o.maxWaitMs) && o.maxWaitMs >= 0)) throw bad('maxWaitMs must be ≥ 0');
}

type Payload = Float32Array | NaflexInput | { ids: BigInt64Array; mask: BigInt64Array };

class EmbedderImpl implements Embedder {
  constructor(
    private readonly opts: EmbedderOptions,
    private readonly files: ModelFiles,
    private readonly tokenizer: TextTokenizer,
    readonly pool: WorkerPool,
    readonly batcher: MicroBatcher<Kind, Payload, Float32Array>,
    private readonly provider: string,
    readonly preprocessPool: PreprocessPool,
  ) {
    // Queue depth is read when /metrics is scraped (nothing is recorded per request).
    this.untrackQueue = metrics.trackEmbeddingQueue(files.modelId, files.variant ?? 'fp32', () => batcher.pending());
  }

  private readonly untrackQueue: () => void;

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
    images.forEach((img, index) => {
      if (!(img.width >= 1 && img.height >= 1) || img.data.length !== img.width * img.height * 3) {
        throw new AppError(ErrorCode.BAD_USER_INPUT, `Image ${index} is not ${img.width}×${img.height} RGB (${img.data.length} bytes)`, {
          index,
        });
      }
    });
    // resize + normalise (NaFlex: patches) on the preprocessing threads; all of one call's images are
    // submitted together, so a multi-image call still forms one batch as it did when this was synchronous
    const inputs = await Promise.all(images.map((img) => this.preprocessPool.run(img)));
    return Promise.all(inputs.map((t) => this.batcher.submit('image', t)));
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
    if (this.files.preprocess.naflex) out.naflex = true;
    return out;
  }

  async close(): Promise<void> {
    this.untrackQueue();
    this.batcher.close();
    await Promise.all([this.pool.close(), this.preprocessPool.close()]);
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
  let files = await loadModelDir(opts.modelDir, opts.variant, opts.provider, opts.calibration ? { calibration: opts.calibration } : {});
  if ('reason' in files.calibration)
    logger.warn({ model: files.baseModelId }, `embedding: matchProbability is null: ${files.calibration.reason}`);
  else logger.info({ model: files.baseModelId, source: files.calibration.source }, 'embedding: calibration for matchProbability');
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
      ...(files.preprocess.naflex ? { naflex: files.preprocess.naflex } : {}),
      warmup: true,
      ...(opts.threadNice ? { threadNice: opts.threadNice } : {}),
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
  const naflex = files.preprocess.naflex;
  const imageElems = naflex ? naflex.maxNumPatches * 3 * naflex.patchSize ** 2 : 3 * files.preprocess.width * files.preprocess.height;
  const L = tokenizer.maxLength;
  const dim = files.dimension;
  const batcher = new MicroBatcher<Kind, Payload, Float32Array>(
    {
      free: () => pool.free(),
      alive: () => pool.alive(),
      async run(kind, payloads) {
        const B = payloads.length;
        const started = performance.now();
        let out: Float32Array;
        if (kind === 'image' && naflex) {
          const N = naflex.maxNumPatches;
          const data = new Float32Array(B * imageElems);
          const mask = new BigInt64Array(B * N);
          const shapes = new BigInt64Array(B * 2);
          payloads.forEach((p, i) => {
            const x = p as NaflexInput;
            data.set(x.pixels, i * imageElems);
            for (let n = 0; n < N; n++) mask[i * N + n] = BigInt(x.mask[n]!);
            shapes[i * 2] = BigInt(x.rows);
            shapes[i * 2 + 1] = BigInt(x.cols);
          });
          out = await pool.run('image', B, data, mask, shapes);
        } else if (kind === 'image') {
          const data = new Float32Array(B * imageElems);
          payloads.forEach((p, i) => data.set(p as Float32Array, i * imageElems));
          out = await pool.run('image', B, data);
        } else {
          const ids = new BigInt64Array(B * L);
          payloads.forEach((p, i) => ids.set((p as { ids: BigInt64Array }).ids, i * L));
          // No attention mask: SigLIP's text tower was trained on ids padded to max_length with every
          // position attended (pooling reads the last position, a pad token). Where an export declares
          // attention_mask, the worker feeds it all ones, which is what that training amounts to; the
          // tokenizer's 0/1 mask would give another vector than transformers' model computes.
          out = await pool.run('text', B, ids);
        }
        metrics.embeddingBatch(files.modelId, files.variant ?? 'fp32', kind, B, (performance.now() - started) / 1000);
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
  const preprocessPool = new PreprocessPool(files.preprocess, opts.preprocessWorkers ?? 1, undefined, opts.threadNice ?? 0);
  return new EmbedderImpl(opts, files, tokenizer, pool, batcher, ready.provider, preprocessPool);
}
