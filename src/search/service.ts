/**
 * Similarity search: turns a query (image, product, or text) into a vector of the active model,
 * then runs the one filtered nearest-neighbour statement and hydrates the products.
 */
import type { Kysely } from 'kysely';
import { unboundedAdmission, untilAborted, type Admission } from '../admission/index.js';
import { LRUCache } from 'lru-cache';
import { AppError, ErrorCode, badInput } from '../errors.js';
import { storedVector, vectorLiteral } from '../db/embeddings.js';
import type { EmbeddingModel } from '../db/models.js';
import { getProduct, getProductsByIds, type Product, type ProductFilter } from '../db/products.js';
import type { DB } from '../db/types.js';
import type { ImageLimits } from '../images/decode.js';
import { decodeForModel } from '../images/embed.js';
import type { FetchImageOptions } from '../images/fetch.js';
import { loadImageBytes } from '../images/source.js';
import type { ModelService } from '../models/service.js';
import { validateFilter, type QueryImage } from '../catalog/validate.js';
import { nearestNeighbours, type NeighbourResult } from './query.js';
import { MAX_K, type Strategy } from './strategy.js';

export interface SearchArgs {
  category?: string | null;
  filter?: ProductFilter | null;
  k?: number | null;
  minScore?: number | null;
  /** Benchmarks and tests only. */
  strategy?: Strategy;
  /** The request's deadline / client disconnect: queued work is dropped and a URL fetch aborted. */
  signal?: AbortSignal | undefined;
}

/** The request-path bounds (src/admission/): the gates, and the pixel cap of a query image. */
export interface SearchLimits {
  admission: Admission;
  /** Pixel cap of a query image (a shopper's photo needs far fewer than an ingest master). */
  maxQueryPixels?: number;
}

export interface ProductMatch {
  product: Product;
  score: number;
  distance: number;
  matchProbability: number | null;
}

export interface SearchOutcome {
  matches: ProductMatch[];
  plan: Omit<NeighbourResult, 'neighbours'>;
}

export const MAX_QUERY_TEXT = 1000;

function validateSearch(args: SearchArgs): { filter: ProductFilter | null; k: number; minScore: number | null } {
  const k = args.k ?? 10;
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw badInput(`k must be between 1 and ${MAX_K}`, { field: 'k', max: MAX_K });
  const minScore = args.minScore ?? null;
  if (minScore !== null && !(minScore >= -1 && minScore <= 1)) throw badInput('minScore must be between -1 and 1', { field: 'minScore' });
  const filter = validateFilter(args.filter);
  if (args.category != null) {
    if (filter?.category != null && filter.category !== args.category) {
      throw badInput('category and filter.category disagree; give one of them', { field: 'category' });
    }
    return { filter: { ...filter, category: args.category }, k, minScore };
  }
  return { filter, k, minScore };
}

export class SearchService {
  private readonly textVectors = new LRUCache<string, string>({ max: 2000 });

  constructor(
    private readonly db: Kysely<DB>,
    private readonly models: ModelService,
    private readonly fetchOptions: FetchImageOptions,
    private readonly imageLimits: ImageLimits,
    private readonly limits: SearchLimits = { admission: unboundedAdmission() },
  ) {}

  private get gates() {
    return this.limits.admission.gates;
  }

  private async activeModel(): Promise<EmbeddingModel> {
    const model = await this.models.activeModel();
    if (!model)
      throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'No embedding model is active yet: load one (README, "Models") and ingest products.');
    return model;
  }

  /** `image` comes validated from the surface (resolvers/inputs.ts): bytes, an http(s) URL, a product id. */
  async similarToImage(image: QueryImage, args: SearchArgs): Promise<SearchOutcome> {
    const opts = validateSearch(args);
    const model = await this.activeModel();
    if (image.kind === 'product') {
      const vector = await storedVector(this.db, model.id, image.id);
      if (!vector) {
        // Only on the error path: tell a missing product from one without a vector.
        const exists = await getProduct(this.db, image.id);
        throw new AppError(
          ErrorCode.NOT_FOUND,
          exists ? `Product ${image.id} has no image vector for the active model ${model.id}` : `No product with id ${image.id}`,
          { field: 'image.productId' },
        );
      }
      return this.run(model, vector, opts, { preferProductId: image.id, strategy: args.strategy, signal: args.signal });
    }
    const embedder = this.models.require(model.id);
    const { signal } = args;
    // A URL is fetched in a fetch slot; the bytes exist only once it is granted.
    const bytes =
      image.kind === 'url'
        ? await this.gates.fetch.run(() => loadImageBytes(image, { ...this.fetchOptions, ...(signal ? { signal } : {}) }), signal)
        : await loadImageBytes(image, this.fetchOptions);
    const limits: ImageLimits = {
      ...this.imageLimits,
      maxImagePixels: Math.min(this.imageLimits.maxImagePixels, this.limits.maxQueryPixels ?? Infinity),
    };
    // The embed slot is taken before decoding, so that full-resolution decoded pixels never wait in a
    // queue: once decoded they go straight into the engine (which squashes them to the model's input).
    // Slots are held until the work really ends; an aborted request is answered at once all the same.
    const embedding = (async () => {
      const release = await this.gates.embed.acquire(signal);
      try {
        const pixels = await this.gates.decode.run(() => decodeForModel(bytes, limits), signal);
        signal?.throwIfAborted();
        return await embedder.embedImages([pixels]);
      } finally {
        release();
      }
    })();
    const [vector] = await untilAborted(embedding, signal);
    return this.run(model, vectorLiteral(vector!), opts, { strategy: args.strategy, signal });
  }

  async similarToText(text: string, args: SearchArgs): Promise<SearchOutcome> {
    const opts = validateSearch(args);
    const query = text.trim();
    if (!query) throw badInput('text must not be empty', { field: 'text' });
    if (query.length > MAX_QUERY_TEXT) throw badInput(`text is longer than ${MAX_QUERY_TEXT} characters`, { field: 'text' });
    const model = await this.activeModel();
    const embedder = this.models.require(model.id);
    // SigLIP 2 was trained on lowercased text: queries differing only in case share one vector.
    const key = `${model.id}\n${query.toLowerCase()}`;
    let vector = this.textVectors.get(key);
    if (!vector) {
      const [v] = await untilAborted(
        this.gates.embed.run(() => embedder.embedTexts([query]), args.signal),
        args.signal,
      );
      vector = vectorLiteral(v!);
      this.textVectors.set(key, vector);
    }
    // The calibration belongs to the model (its logit scale and bias): the embedder computes it.
    return this.run(model, vector, opts, { strategy: args.strategy, signal: args.signal }, (score) => embedder.matchProbability(score));
  }

  /** Text-query vectors cached so far (tests, diagnostics). */
  get cachedTextQueries(): number {
    return this.textVectors.size;
  }

  private async run(
    model: EmbeddingModel,
    vector: string,
    opts: { filter: ProductFilter | null; k: number; minScore: number | null },
    extra: { preferProductId?: string; strategy?: Strategy | undefined; signal?: AbortSignal | undefined },
    calibrate: (score: number) => number | null = () => null,
  ): Promise<SearchOutcome> {
    // A large k has a gate of its own: small-k (storefront) queries never wait behind large ones.
    const gate = this.limits.admission.queryGate(opts.k);
    return untilAborted(
      gate.run(() => this.runQuery(model, vector, opts, extra, calibrate), extra.signal),
      extra.signal,
    );
  }

  private async runQuery(
    model: EmbeddingModel,
    vector: string,
    opts: { filter: ProductFilter | null; k: number; minScore: number | null },
    extra: { preferProductId?: string; strategy?: Strategy | undefined },
    calibrate: (score: number) => number | null,
  ): Promise<SearchOutcome> {
    const result = await nearestNeighbours(this.db, {
      model,
      vector,
      filter: opts.filter,
      k: opts.k,
      ...(extra.preferProductId ? { preferProductId: extra.preferProductId } : {}),
      ...(extra.strategy ? { strategy: extra.strategy } : {}),
    });
    const { neighbours, ...plan } = result;
    const kept = opts.minScore === null ? neighbours : neighbours.filter((n) => 1 - n.distance >= opts.minScore!);
    const products = await getProductsByIds(
      this.db,
      kept.map((n) => n.productId),
    );
    const matches = kept.flatMap((n) => {
      const product = products.get(n.productId);
      if (!product) return []; // deleted in the meantime
      const score = 1 - n.distance;
      return [{ product, score, distance: n.distance, matchProbability: calibrate(score) }];
    });
    return { matches, plan };
  }
}
