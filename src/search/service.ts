/**
 * Similarity search: turns a query (image, product, or text) into a vector of the active model,
 * then runs the one filtered nearest-neighbour statement and hydrates the products.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import { unboundedAdmission, untilAborted, type Admission } from '../admission/index.js';
import { AppError, ErrorCode, badInput } from '../errors.js';
import { metrics } from '../metrics/index.js';
import { collapsibleProducts, duplicateGroupsOf } from '../db/duplicates.js';
import { storedVector, vectorLiteral } from '../db/embeddings.js';
import type { EmbeddingModel } from '../db/models.js';
import type { ProductImage } from '../db/images.js';
import { getProduct, type Product, type ProductFilter } from '../db/products.js';
import type { RegionBox } from '../db/types.js';
import { mayReadReplica, readFromPrimary } from '../db/read-routing.js';
import type { DB } from '../db/types.js';
import type { ImageLimits } from '../images/decode.js';
import { decodeForModel, decodeSizeFor } from '../images/embed.js';
import type { FetchImageOptions } from '../images/fetch.js';
import { loadImageBytes } from '../images/source.js';
import type { ModelService } from '../models/service.js';
import { validateFilter, validateRegion, type QueryImage } from '../catalog/validate.js';
import { originalImage } from '../db/eval-samples.js';
import { cropPixels } from '../images/regions.js';
import { PageCursors } from './cursor.js';
import { SelectivityEstimator } from './estimate.js';
import { DEFAULT_FUSION, fuse, keywordSearch, type FusionWeights } from './keyword.js';
import { classifyVector, DEFAULT_TEMPLATE, labelPrompts, type LabelScore } from '../embedding/zero-shot.js';
import { averageVectorQuery, bestScore, checkWeights, combineUnitVectors, MAX_EXAMPLES, parseVector } from './compose.js';
import { bestCosines, searchNeighbours, type ImageHit, type NeighbourResult } from './query.js';
import { MAX_K, type Strategy } from './strategy.js';

export interface SearchArgs {
  category?: string | null;
  filter?: ProductFilter | null;
  k?: number | null;
  minScore?: number | null;
  /** A ready, loaded model's id; null/undefined: the active model. */
  model?: string | null;
  /** How many of each product's best photos imageMatches lists (1–MAX_IMAGES_PER_MATCH, default 1). */
  imagesPerProduct?: number | null;
  /** Image queries: the box of the query photo to search for (fractions), cropped before embedding. */
  region?: RegionBox | null;
  /** Keep one product per near-duplicate group (db/duplicates.ts, the model's last scan); still exactly k. */
  collapseDuplicates?: boolean | null;
  /**
   * Whether the matches carry their matched photos (matchedImage, matchedRegion, imageMatches' photos):
   * default true; false when the client's selection asks for none of them, so the statement reads no photo.
   */
  matchedPhotos?: boolean;
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
  /** Signs and verifies page cursors (cursor.ts); unset: a key generated for this process. */
  cursors?: PageCursors;
}

/** One photo's match: the photo (null for a vector of no stored photo), its region (null: the whole photo). */
export interface ImageMatch {
  image: ProductImage | null;
  region: RegionBox | null;
  score: number;
}

export interface ProductMatch {
  product: Product;
  /** The best photo's score: the product's. */
  score: number;
  distance: number;
  matchProbability: number | null;
  /** The photo that matched best, and its region when a region matched better than the whole photo. */
  matchedImage: ProductImage | null;
  matchedRegion: RegionBox | null;
  /** The product's best photos, best first (imagesPerProduct of them, at least the matched one). */
  imageMatches: ImageMatch[];
}

/** imagesPerProduct's bound: a product's photos (PRODUCT_MAX_IMAGES is at most 100). */
export const MAX_IMAGES_PER_MATCH = 100;

function toImageMatch(hit: ImageHit): ImageMatch {
  const region = hit.region > 0 && hit.image ? (hit.image.regions[hit.region - 1] ?? null) : null;
  return { image: hit.image, region, score: 1 - hit.distance };
}

/** A matched product for the API: its score, its best photo and region, its best photos. */
export function productMatch(product: Product, distance: number, hits: ImageHit[], matchProbability: number | null): ProductMatch {
  const imageMatches = hits.map(toImageMatch);
  return {
    product,
    score: 1 - distance,
    distance,
    matchProbability,
    matchedImage: imageMatches[0]?.image ?? null,
    matchedRegion: imageMatches[0]?.region ?? null,
    imageMatches,
  };
}

export interface SearchOutcome {
  matches: ProductMatch[];
  plan: Omit<NeighbourResult, 'neighbours'> & { roundTrips: number };
  /** The model whose vectors answered (null: KEYWORD, no model involved). */
  model: string | null;
}

export const MAX_QUERY_TEXT = 1000;

export type SearchMode = 'VECTOR' | 'KEYWORD' | 'HYBRID';

export interface TextSearchArgs extends SearchArgs {
  mode?: SearchMode | null;
  /** HYBRID only: the weights of reciprocal rank fusion (defaults: DEFAULT_FUSION). */
  weights?: { vector?: number | null; keyword?: number | null; rrfK?: number | null } | null;
}

export interface PageArgs {
  first?: number | null;
  after?: string | null;
}

export interface MatchPage {
  edges: Array<{ cursor: string; node: ProductMatch }>;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export const MAX_PAGE = 100;

function fingerprint(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 16);
}

/** What identifies a query image in a page cursor's fingerprint: its product, URL or bytes' hash. */
function imageRef(image: QueryImage) {
  return image.kind === 'product'
    ? { product: image.id }
    : image.kind === 'url'
      ? { url: image.url }
      : { bytes: createHash('sha256').update(image.bytes).digest('base64url') };
}

const MAX_FUSION_WEIGHT = 1000;

function validateWeights(w: TextSearchArgs['weights']): FusionWeights {
  const weights = {
    vector: w?.vector ?? DEFAULT_FUSION.vector,
    keyword: w?.keyword ?? DEFAULT_FUSION.keyword,
    rrfK: w?.rrfK ?? DEFAULT_FUSION.rrfK,
  };
  if (!(weights.vector >= 0 && weights.keyword >= 0 && weights.vector + weights.keyword > 0))
    throw badInput('weights must be ≥ 0 and not both 0', { field: 'weights' });
  // Only their ratio matters to the ranking; a huge weight made scores of 3e306 (issue 21).
  if (!(weights.vector <= MAX_FUSION_WEIGHT && weights.keyword <= MAX_FUSION_WEIGHT))
    throw badInput(`weights must be at most ${MAX_FUSION_WEIGHT}`, { field: 'weights', max: MAX_FUSION_WEIGHT });
  if (!(weights.rrfK >= 0 && weights.rrfK <= 10_000)) throw badInput('weights.rrfK must be between 0 and 10000', { field: 'weights.rrfK' });
  return weights;
}

interface ValidSearch {
  filter: ProductFilter | null;
  k: number;
  minScore: number | null;
  imagesPerProduct: number;
  collapseDuplicates?: boolean;
  matchedPhotos: boolean;
}

function validateSearch(args: SearchArgs): ValidSearch {
  const k = args.k ?? 10;
  const imagesPerProduct = args.imagesPerProduct ?? 1;
  if (!Number.isInteger(imagesPerProduct) || imagesPerProduct < 1 || imagesPerProduct > MAX_IMAGES_PER_MATCH)
    throw badInput(`imagesPerProduct must be between 1 and ${MAX_IMAGES_PER_MATCH}`, {
      field: 'imagesPerProduct',
      max: MAX_IMAGES_PER_MATCH,
    });
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw badInput(`k must be between 1 and ${MAX_K}`, { field: 'k', max: MAX_K });
  const minScore = args.minScore ?? null;
  if (minScore !== null && !(minScore >= -1 && minScore <= 1)) throw badInput('minScore must be between -1 and 1', { field: 'minScore' });
  const filter = validateFilter(args.filter);
  if (args.category != null && filter?.category != null && filter.category !== args.category)
    throw badInput('category and filter.category disagree; give one of them', { field: 'category' });
  return {
    filter: args.category != null ? { ...filter, category: args.category } : filter,
    k,
    minScore,
    imagesPerProduct,
    collapseDuplicates: args.collapseDuplicates ?? false,
    matchedPhotos: args.matchedPhotos ?? true,
  };
}

function validateText(text: string, field = 'text'): string {
  const query = text.trim();
  if (!query) throw badInput(`${field} must not be empty`, { field });
  if (query.length > MAX_QUERY_TEXT) throw badInput(`${field} is longer than ${MAX_QUERY_TEXT} characters`, { field });
  return query;
}

/** recommendProducts' arguments: example product ids, the strategy, and a search's filters. */
export interface RecommendArgs extends Omit<SearchArgs, 'strategy'> {
  positive: readonly string[];
  negative?: readonly string[] | null;
  strategy?: 'AVERAGE_VECTOR' | 'BEST_SCORE' | null;
  excludeExamples?: boolean | null;
  /** Benchmarks and tests only: the walks' strategy (SearchArgs.strategy). */
  searchStrategy?: Strategy;
}

/** BEST_SCORE's rounds of walks at most (each 4 times as deep as the last): its cost bound. */
export const BEST_SCORE_ROUNDS = 3;

/** classifyImage's answer: each label's score and probability, most probable first. */
export interface ImageClassification {
  model: string;
  labels: LabelScore[];
  /** Why the probabilities are null (the model's calibration is unknown); null when they are not. */
  message: string | null;
}

/** One term of a composed query (compose.ts): a photo (any query image, with its region) or a text, weighted. */
export type ComposedTerm = { weight: number } & (
  { kind: 'image'; image: QueryImage; region?: RegionBox | null } | { kind: 'text'; text: string }
);

export class SearchService {
  private readonly textVectors = new LRUCache<string, string>({ max: 2000 });
  /** Planner statistics read once and refreshed (estimate.ts): the strategy costs no round trip. */
  readonly estimator: SelectivityEstimator;

  constructor(
    private readonly db: Kysely<DB>,
    private readonly models: ModelService,
    private readonly fetchOptions: FetchImageOptions,
    private readonly imageLimits: ImageLimits,
    private readonly limits: SearchLimits = { admission: unboundedAdmission() },
  ) {
    this.estimator = new SelectivityEstimator(db);
    this.cursors = limits.cursors ?? new PageCursors();
  }

  /** Page cursors: also read by the operation budget, which charges a page its depth (admission/budget.ts). */
  readonly cursors: PageCursors;
  /** The admission gates search waits in; federation's entity batches use its `query` gate (resolvers/entities.ts). */
  get admission(): Admission {
    return this.limits.admission;
  }

  private get gates() {
    return this.limits.admission.gates;
  }

  /** The model a query runs for: the given one, else the active one from the models service's cache. */
  private async queryModel(ref: string | null | undefined): Promise<EmbeddingModel> {
    // An explicit model must be able to answer (ready or active, files loaded): MODEL_UNAVAILABLE otherwise.
    if (ref?.trim()) return (await this.models.servingModel(ref)).model;
    const model = await this.models.cachedActiveModel();
    if (!model)
      throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'No embedding model is active yet: load one (README, "Models") and ingest products.');
    return model;
  }

  /** `image` comes validated from the surface (resolvers/inputs.ts): bytes, an http(s) URL, a product id. */
  async similarToImage(image: QueryImage, args: SearchArgs): Promise<SearchOutcome> {
    const opts = validateSearch(args);
    const region = args.region ? validateRegion('region', args.region) : null;
    return this.withModel(args.model, async (model) => {
      if (image.kind === 'product' && region) {
        // A region of a stored product's photo: its main photo's bytes, cropped and embedded like an upload.
        const original = await originalImage(this.db, image.id);
        if (!original) throw new AppError(ErrorCode.NOT_FOUND, `Product ${image.id} has no stored photo`, { field: 'image.productId' });
        return this.embedAndRun(model, { kind: 'bytes', bytes: original }, region, opts, args);
      }
      if (image.kind === 'product') {
        const vector = await this.productVector(model, image.id, 'image.productId');
        return this.run(model, vector, opts, { preferProductId: image.id, strategy: args.strategy, signal: args.signal });
      }
      return this.embedAndRun(model, image, region, opts, args);
    });
  }

  /** A product's stored vector (its main photo's) for the model; NOT_FOUND naming `field` when it has none. */
  private async productVector(model: EmbeddingModel, id: string, field: string): Promise<string> {
    const vector = await storedVector(this.db, model.id, id);
    if (vector) return vector;
    // Only on the error path: tell a missing product from one without a vector.
    const exists = await getProduct(this.db, id);
    throw new AppError(
      ErrorCode.NOT_FOUND,
      exists ? `Product ${id} has no image vector for the model ${model.id}` : `No product with id ${id}`,
      { field, id },
    );
  }

  /**
   * A composed query (compose.ts): its terms checked, then the stored vectors of its products read (an
   * unknown product refuses the query before anything is embedded), then its texts (cached) and photos
   * embedded, and their weighted sum of unit vectors searched like any one vector. Terms of weight 0 are
   * dropped unread. score: cosine similarity with the composed vector; matchProbability: null (no one text).
   */
  async similarToComposed(terms: readonly ComposedTerm[], args: SearchArgs): Promise<SearchOutcome> {
    const opts = validateSearch(args);
    if (args.region) throw badInput('region belongs on a term of a composed query (query.terms[i].region)', { field: 'region' });
    checkWeights(terms.map((t) => t.weight));
    type Kept = ComposedTerm & { index: number; region?: RegionBox | null };
    const kept = terms.flatMap((t, index): Kept[] => {
      if (t.weight === 0) return [];
      if (t.kind === 'text') return [{ ...t, index, text: validateText(t.text, `query.terms[${index}].text`) }];
      return [{ ...t, index, region: t.region ? validateRegion(`query.terms[${index}].region`, t.region) : null }];
    });
    return this.withModel(args.model, async (model) => {
      const stored = new Map<number, Float32Array>();
      for (const t of kept) {
        if (t.kind !== 'image' || t.image.kind !== 'product') continue;
        const field = `query.terms[${t.index}].image.productId`;
        if (!t.region) stored.set(t.index, parseVector(await this.productVector(model, t.image.id, field)));
        else if (!(await originalImage(this.db, t.image.id)))
          throw new AppError(ErrorCode.NOT_FOUND, `Product ${t.image.id} has no stored photo`, { field, id: t.image.id });
      }
      const vectors = await Promise.all(
        kept.map(async (t): Promise<Float32Array> => {
          if (t.kind === 'text') return parseVector(await this.textVector(model, t.text));
          const image = t.image;
          if (image.kind !== 'product') return this.embedQueryImage(model, image, t.region ?? null, args.signal);
          if (!t.region) return stored.get(t.index)!;
          // A region of a stored product's photo: its main photo's bytes, cropped and embedded like an upload.
          const original = await originalImage(this.db, image.id);
          return this.embedQueryImage(model, { kind: 'bytes', bytes: original! }, t.region, args.signal);
        }),
      );
      const query = combineUnitVectors(
        vectors,
        kept.map((t) => t.weight),
      );
      return this.run(model, vectorLiteral(query), opts, { strategy: args.strategy, signal: args.signal });
    });
  }

  /** An image query's bytes (fetched in a fetch slot) → decoded, cropped to the region, embedded → the query. */
  private async embedAndRun(
    model: EmbeddingModel,
    image: Exclude<QueryImage, { kind: 'product' }>,
    region: RegionBox | null,
    opts: ValidSearch,
    args: SearchArgs,
  ): Promise<SearchOutcome | null> {
    const vector = await this.embedQueryImage(model, image, region, args.signal);
    return this.run(model, vectorLiteral(vector), opts, { strategy: args.strategy, signal: args.signal });
  }

  /** A query photo's vector: fetched (URL) in a fetch slot, decoded, cropped to the region, embedded. */
  private async embedQueryImage(
    model: EmbeddingModel,
    image: Exclude<QueryImage, { kind: 'product' }>,
    region: RegionBox | null,
    signal: AbortSignal | undefined,
  ): Promise<Float32Array> {
    const embedder = this.models.require(model.id);
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
        // decoded no larger than the model (and the region) needs, where the format shrinks on load
        const atLeast = decodeSizeFor(embedder, region ? [region] : []);
        const whole = await this.gates.decode.run(() => decodeForModel(bytes, limits, atLeast), signal);
        signal?.throwIfAborted();
        return await embedder.embedImages([region ? cropPixels(whole, region) : whole]);
      } finally {
        release();
      }
    })();
    const [vector] = await untilAborted(embedding, signal);
    return vector!;
  }

  /**
   * Runs a query for the model; when the statement finds the cached active model retired (a switch by
   * another replica), forgets it and runs once more for the new one.
   */
  private async withModel(
    ref: string | null | undefined,
    run: (model: EmbeddingModel) => Promise<SearchOutcome | null>,
  ): Promise<SearchOutcome> {
    for (let attempt = 0; ; attempt++) {
      const model = await this.queryModel(ref);
      let outcome: SearchOutcome | null;
      try {
        outcome = await run(model);
      } catch (err) {
        // A stale cached model can fail before the statement's guard is read (its vectors dropped, its
        // files not loaded here): on an error, check once whether the active model is still this one.
        if (attempt > 0 || ref?.trim() || !(err instanceof AppError)) throw err;
        const current = await this.models.activeModel();
        if (current?.id !== model.id) outcome = null;
        // A read replica behind the switch to this model may lack its vectors (a product's stored vector:
        // NOT_FOUND there): the primary has them. Other errors (the image, the fetch) would only repeat.
        else if (err.code === ErrorCode.NOT_FOUND && mayReadReplica(this.db)) outcome = await readFromPrimary(() => run(model));
        else throw err;
      }
      if (outcome) return outcome;
      this.models.invalidateActiveModel();
      // On a read replica the guard can be behind instead: the switch to this model is committed on the
      // primary (whose answer the cache holds) but not replayed there yet, so the replica may also lack
      // the model's newest vectors. When the primary says the model is active, the primary answers.
      if (mayReadReplica(this.db) && (await this.models.activeModel())?.id === model.id) {
        const again = await readFromPrimary(() => run(model));
        if (again) return again;
      }
      if (attempt >= 1) throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'The active model changed twice during this query; try again.');
    }
  }

  async similarToText(text: string, args: SearchArgs): Promise<SearchOutcome> {
    const opts = validateSearch(args);
    const query = validateText(text);
    return this.withModel(args.model, (model) => this.textQuery(model, query, opts, args.strategy, args.signal));
  }

  /** The text query's vector for a model (cached per model and lowercased text). */
  async textVector(model: EmbeddingModel, query: string): Promise<string> {
    const embedder = this.models.require(model.id);
    // SigLIP 2 was trained on lowercased text: queries differing only in case share one vector.
    const key = `${model.id}\n${query.toLowerCase()}`;
    let vector = this.textVectors.get(key);
    if (!vector) {
      const [v] = await embedder.embedTexts([query]);
      vector = vectorLiteral(v!);
      this.textVectors.set(key, vector);
    }
    return vector;
  }

  private async textQuery(
    model: EmbeddingModel,
    query: string,
    opts: ValidSearch,
    strategy: Strategy | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SearchOutcome | null> {
    const embedder = this.models.require(model.id);
    const vector = await this.textVector(model, query);
    // The calibration belongs to the model (its logit scale and bias): the embedder computes it.
    return this.run(model, vector, opts, { strategy, signal }, (score) => embedder.matchProbability(score));
  }

  /**
   * searchProducts with a mode: VECTOR (SigLIP text→image, as similarToText), KEYWORD (full-text search
   * over SKU, brand, title, description; no model needed) or HYBRID (both, fused by reciprocal rank).
   * score: cosine similarity (VECTOR), the normalised text rank (KEYWORD), the fused score (HYBRID).
   */
  async searchText(text: string, args: TextSearchArgs): Promise<SearchOutcome> {
    const mode = args.mode ?? 'VECTOR';
    if (mode === 'VECTOR') return this.similarToText(text, args);
    const opts = validateSearch(args);
    if (opts.minScore !== null) throw badInput('minScore applies to VECTOR searches only', { field: 'minScore' });
    const weights = validateWeights(args.weights);
    const query = validateText(text);
    if (mode === 'KEYWORD') {
      const found = await this.keyword({ text: query, filter: opts.filter, k: opts.k }, args.signal);
      return {
        matches: found.map((m) => ({
          product: m.product,
          score: m.rank,
          distance: 1 - m.rank,
          matchProbability: null,
          matchedImage: null,
          matchedRegion: null,
          imageMatches: [],
        })),
        plan: { strategy: 'exact', estimatedMatches: -1, fellBack: false, walks: 0, roundTrips: 1 },
        model: null,
      };
    }
    // Each side ranks more than k, so that fusion can lift a product that only one side ranks high; the
    // vector side alone returns k whenever k products match the filters ("exactly k when k exist").
    const pool = Math.min(MAX_K, Math.max(2 * opts.k, 50));
    return this.withModel(args.model, async (model) => {
      const [vectorSide, keywordSide] = await Promise.all([
        this.textQuery(model, query, { ...opts, k: pool }, args.strategy, args.signal),
        this.keyword({ text: query, filter: opts.filter, k: pool }, args.signal),
      ]);
      if (!vectorSide) return null;
      const embedder = this.models.require(model.id);
      const fused = fuse(vectorSide.matches, keywordSide, weights).slice(0, opts.k);
      // The photos that matched come from the vector side (a keyword-only match has none).
      const byVector = new Map(vectorSide.matches.map((m) => [m.product.id, m]));
      return {
        matches: fused.map((f) => {
          const v = byVector.get(f.product.id);
          return {
            product: f.product,
            score: f.fused,
            distance: 1 - f.fused,
            matchProbability: f.distance === null ? null : embedder.matchProbability(1 - f.distance),
            matchedImage: v?.matchedImage ?? null,
            matchedRegion: v?.matchedRegion ?? null,
            imageMatches: v?.imageMatches ?? [],
          };
        }),
        plan: { ...vectorSide.plan, roundTrips: vectorSide.plan.roundTrips + 1 },
        model: model.id,
      };
    });
  }

  /**
   * Recommendations from example products (compose.ts has the two strategies' arithmetic). An example is
   * its stored vector (its main photo's); every example is read, and an unknown one refused (NOT_FOUND),
   * before any walk. excludeExamples (default) leaves the examples out of the answer: each walk ranks
   * k + |examples| products, so that k remain whenever k others match the filters.
   *
   * AVERAGE_VECTOR: one walk for the averaged vector; score = its cosine with the product's best photo.
   * BEST_SCORE: one walk per positive (its k + |examples| nearest products: the candidates), then one
   * statement for every candidate's best cosine to every example, scored and ranked here. The answer is
   * exact when the k-th score is at least every full walk's last cosine (no product outside the
   * candidates can score higher); otherwise the walks go 4 times as deep, at most twice more. The bound:
   * 3 rounds of |positive| walks, each at most min(1000, 16·(k + |examples|)) products deep, and one
   * scoring statement per round; past it the answer is the best among the candidates.
   */
  async recommend(args: RecommendArgs): Promise<SearchOutcome> {
    const opts = validateSearch({ ...args, strategy: args.searchStrategy });
    const positive = [...new Set(args.positive)];
    const negative = [...new Set(args.negative ?? [])];
    if (positive.length === 0) throw badInput('positive must name at least one product', { field: 'positive' });
    for (const [field, list] of [
      ['positive', positive],
      ['negative', negative],
    ] as const)
      if (list.length > MAX_EXAMPLES)
        throw badInput(`${field} names ${list.length} products; at most ${MAX_EXAMPLES}`, {
          field,
          reason: 'TOO_MANY_EXAMPLES',
          max: MAX_EXAMPLES,
        });
    const both = positive.find((id) => negative.includes(id));
    if (both) throw badInput(`product ${both} is both a positive and a negative example`, { field: 'negative', id: both });
    const strategy = args.strategy ?? 'AVERAGE_VECTOR';
    const exclude = args.excludeExamples ?? true;
    const examples = new Set([...positive, ...negative]);
    const extra = exclude ? examples.size : 0;
    return this.withModel(args.model, async (model) => {
      const read = async (ids: string[], field: string) =>
        Promise.all(ids.map(async (id, i) => await this.productVector(model, id, `${field}[${i}]`)));
      const pos = await read(positive, 'positive');
      const neg = await read(negative, 'negative');
      const keep = (m: ProductMatch) => !(exclude && examples.has(m.product.id)) && (opts.minScore === null || m.score >= opts.minScore);
      const run = { strategy: args.searchStrategy, signal: args.signal };
      if (strategy === 'AVERAGE_VECTOR') {
        const query = averageVectorQuery(pos.map(parseVector), neg.map(parseVector));
        const walked = await this.run(model, vectorLiteral(query), { ...opts, minScore: null, k: Math.min(MAX_K, opts.k + extra) }, run);
        if (!walked) return null;
        return { ...walked, matches: walked.matches.filter(keep).slice(0, opts.k) };
      }
      return this.bestScoreRecommend(model, pos, neg, opts, extra, keep, run);
    });
  }

  /** BEST_SCORE (see recommend()): walks per positive, the candidates scored against every example. */
  private async bestScoreRecommend(
    model: EmbeddingModel,
    pos: string[],
    neg: string[],
    opts: ValidSearch,
    extra: number,
    keep: (m: ProductMatch) => boolean,
    run: { strategy: Strategy | undefined; signal: AbortSignal | undefined },
  ): Promise<SearchOutcome | null> {
    let depth = Math.min(MAX_K, opts.k + extra);
    let roundTrips = 0;
    let walks = 0;
    for (let round = 1; ; round++) {
      // Each candidate as its nearest walk found it (the photos that matched its best positive).
      const candidates = new Map<string, ProductMatch>();
      let floor = -Infinity; // the highest last cosine of a walk that may have stopped short of more products
      for (const vector of pos) {
        const walked = await this.run(model, vector, { ...opts, minScore: null, k: depth }, run);
        if (!walked) return null;
        walks++;
        roundTrips += walked.plan.roundTrips;
        for (const m of walked.matches) {
          const seen = candidates.get(m.product.id);
          if (!seen || m.score > seen.score) candidates.set(m.product.id, m);
        }
        if (walked.matches.length >= depth) floor = Math.max(floor, walked.matches.at(-1)!.score);
      }
      const cosines = await bestCosines(this.db, model, [...candidates.keys()], [...pos, ...neg], opts.filter);
      roundTrips++;
      const scored = [...candidates.values()]
        .map((m) => {
          const c = cosines.get(m.product.id) ?? [];
          const score = bestScore(c.slice(0, pos.length), c.slice(pos.length));
          return { ...m, score, distance: 1 - score, matchProbability: null };
        })
        .filter(keep)
        .sort((a, b) => b.score - a.score || Number(a.product.id) - Number(b.product.id));
      // No product outside the candidates is nearer a positive than the deepest full walk's last one.
      const kth = scored[opts.k - 1]?.score ?? -Infinity;
      const exact = kth >= floor;
      if (exact || round >= BEST_SCORE_ROUNDS || depth >= MAX_K) {
        return {
          matches: scored.slice(0, opts.k),
          plan: { strategy: 'exact', estimatedMatches: -1, fellBack: !exact, walks, roundTrips },
          model: model.id,
        };
      }
      depth = Math.min(MAX_K, depth * 4);
    }
  }

  /**
   * Zero-shot classification of a query photo (embedding/zero-shot.ts): each label put into the template,
   * embedded as a text (cached like a search text), and scored by SigLIP's own per-label probability,
   * most probable first. The labels are checked before the photo is read. probability is null, with
   * `message` saying why, where the model's calibration is unknown (the cosines still order the labels).
   */
  async classifyImage(
    image: QueryImage,
    labels: readonly string[],
    args: { template?: string | null; region?: RegionBox | null; model?: string | null; signal?: AbortSignal | undefined },
  ): Promise<ImageClassification> {
    const checked = labelPrompts(labels, args.template ?? DEFAULT_TEMPLATE);
    const region = args.region ? validateRegion('region', args.region) : null;
    const model = await this.queryModel(args.model);
    const embedder = this.models.require(model.id);
    let vector: Float32Array;
    if (image.kind !== 'product') vector = await this.embedQueryImage(model, image, region, args.signal);
    else if (!region) vector = parseVector(await this.productVector(model, image.id, 'image.productId'));
    else {
      const original = await originalImage(this.db, image.id);
      if (!original) throw new AppError(ErrorCode.NOT_FOUND, `Product ${image.id} has no stored photo`, { field: 'image.productId' });
      vector = await this.embedQueryImage(model, { kind: 'bytes', bytes: original }, region, args.signal);
    }
    const vectors = await Promise.all(checked.prompts.map(async (p) => parseVector(await this.textVector(model, p))));
    const scores = classifyVector(vector, { ...checked, vectors }, (score) => embedder.matchProbability(score));
    const calibrated = embedder.matchProbability(0) !== null;
    return {
      model: model.id,
      labels: scores,
      message: calibrated
        ? null
        : `The model ${model.id} has no known calibration (logit scale and bias): probabilities are null and the labels are ordered by cosine similarity. Set EMBEDDING_LOGIT_SCALE and EMBEDDING_LOGIT_BIAS (README, "Models") to enable them.`,
    };
  }

  /** similarProducts as cursor pages (first/after): see page(). */
  async similarToImagePage(image: QueryImage, args: SearchArgs & PageArgs): Promise<MatchPage> {
    return this.page(
      args,
      [
        'image',
        imageRef(image),
        args.region,
        args.category,
        args.filter,
        args.minScore,
        args.model,
        args.imagesPerProduct,
        args.collapseDuplicates ?? false,
      ],
      (k) => this.similarToImage(image, { ...args, k }),
    );
  }

  /** similarProducts' composed query as cursor pages (first/after): see page(). */
  async similarToComposedPage(terms: readonly ComposedTerm[], args: SearchArgs & PageArgs): Promise<MatchPage> {
    const refs = terms.map((t) =>
      t.kind === 'text'
        ? { text: t.text.trim().toLowerCase(), w: t.weight }
        : { image: imageRef(t.image), region: t.region ?? null, w: t.weight },
    );
    return this.page(
      args,
      ['composed', refs, args.category, args.filter, args.minScore, args.model, args.imagesPerProduct, args.collapseDuplicates ?? false],
      (k) => this.similarToComposed(terms, { ...args, k }),
    );
  }

  /** searchProducts as cursor pages (first/after): see page(). */
  async searchTextPage(text: string, args: TextSearchArgs & PageArgs): Promise<MatchPage> {
    return this.page(
      args,
      [
        'text',
        text.trim().toLowerCase(),
        args.category,
        args.filter,
        args.minScore,
        args.mode ?? 'VECTOR',
        args.weights,
        args.model,
        args.imagesPerProduct,
      ],
      (k) => this.searchText(text, { ...args, k }),
    );
  }

  /**
   * A page of a ranked result: the query is answered for the matches up to the end of this page (plus one,
   * to know whether more follow), and the page starts after the previous page's last match. The order is
   * total (score, then id), so while the catalog does not change pages neither repeat nor skip a match.
   * When it changed, the page continues after the previous last match if that is still in the results;
   * when that match is gone, continuing would skip or repeat unknown matches: CONFLICT, start again.
   * Pages reach MAX_K matches deep.
   */
  private async page(args: PageArgs, query: unknown[], run: (k: number) => Promise<SearchOutcome>): Promise<MatchPage> {
    const first = args.first ?? 10;
    if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE)
      throw badInput(`first must be between 1 and ${MAX_PAGE}`, { field: 'first', max: MAX_PAGE });
    const q = fingerprint(query);
    const cursor = args.after ? this.cursors.verify(args.after) : null;
    if (cursor && cursor.q !== q)
      throw badInput('after belongs to another query (text, image, filters, mode or model differ)', { field: 'after' });
    const offset = cursor?.o ?? 0;
    if (offset >= MAX_K) return { edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
    const k = Math.min(MAX_K, offset + first + 1);
    const { matches } = await run(k);
    let start = 0;
    if (cursor) {
      const at = matches.findIndex((m) => m.product.id === cursor.id);
      if (at < 0)
        throw new AppError(
          ErrorCode.CONFLICT,
          'The results changed too much since this cursor was issued (its last match is gone); start again without after',
          {
            field: 'after',
          },
        );
      start = at + 1;
    }
    const nodes = matches.slice(start, start + first);
    const edges = nodes.map((node, i) => ({
      node,
      cursor: this.cursors.encode({ o: offset + i + 1, id: node.product.id, s: node.score, q }),
    }));
    const hasNextPage = matches.length > start + first && offset + nodes.length < MAX_K;
    return { edges, pageInfo: { hasNextPage, endCursor: edges.at(-1)?.cursor ?? null } };
  }

  /** Text-query vectors cached so far (tests, diagnostics). */
  get cachedTextQueries(): number {
    return this.textVectors.size;
  }

  /** A keyword query, in a query slot like any similarity statement. */
  private keyword(q: Parameters<typeof keywordSearch>[1], signal: AbortSignal | undefined) {
    const gate = this.limits.admission.queryGate(q.k);
    return untilAborted(
      gate.run(() => keywordSearch(this.db, q), signal),
      signal,
    );
  }

  private async run(
    model: EmbeddingModel,
    vector: string,
    opts: ValidSearch,
    extra: { preferProductId?: string; strategy?: Strategy | undefined; signal?: AbortSignal | undefined },
    calibrate: (score: number) => number | null = () => null,
  ): Promise<SearchOutcome | null> {
    // A large k has a gate of its own: small-k (storefront) queries never wait behind large ones.
    const gate = this.limits.admission.queryGate(opts.k);
    return untilAborted(
      gate.run(
        () =>
          opts.collapseDuplicates
            ? this.runCollapsed(model, vector, opts, extra, calibrate)
            : this.runQuery(model, vector, opts, extra, calibrate),
        extra.signal,
      ),
      extra.signal,
    );
  }

  /**
   * A query keeping one product per near-duplicate group (the best-ranked): asks for more than k and
   * collapses, asking again deeper while fewer than k groups came back and more products exist. Asking for
   * k + (products beyond the first of each group) is always enough, so the answer is exactly k whenever
   * k groups (products in no group count as their own) match, as long as that is within k + MAX_K.
   */
  private async runCollapsed(
    model: EmbeddingModel,
    vector: string,
    opts: ValidSearch,
    extra: { preferProductId?: string; strategy?: Strategy | undefined },
    calibrate: (score: number) => number | null,
  ): Promise<SearchOutcome | null> {
    // Bounded for the public API: at most MAX_K products beyond k are read, so a catalog of huge groups
    // cannot turn one query into a scan (then fewer than k only if over MAX_K duplicates rank above the k-th group).
    const removable = Math.min(MAX_K, await collapsibleProducts(this.db, model.id));
    const deepest = opts.k + removable;
    let want = Math.min(deepest, 2 * opts.k);
    for (;;) {
      const outcome = await this.runQuery(model, vector, { ...opts, k: want }, extra, calibrate);
      if (!outcome) return null;
      const groups = await duplicateGroupsOf(
        this.db,
        model.id,
        outcome.matches.map((m) => m.product.id),
      );
      const seen = new Set<string>();
      const kept: ProductMatch[] = [];
      for (const m of outcome.matches) {
        const group = groups.get(m.product.id) ?? `product ${m.product.id}`;
        if (seen.has(group)) continue;
        seen.add(group);
        kept.push(m);
        if (kept.length === opts.k) break;
      }
      // Done with k, or when the query ran out of products (fewer than asked), or at the depth that is always enough.
      if (kept.length === opts.k || outcome.matches.length < want || want >= deepest) return { ...outcome, matches: kept };
      want = Math.min(deepest, want * 4);
    }
  }

  private async runQuery(
    model: EmbeddingModel,
    vector: string,
    opts: ValidSearch,
    extra: { preferProductId?: string; strategy?: Strategy | undefined },
    calibrate: (score: number) => number | null,
  ): Promise<SearchOutcome | null> {
    const result = await searchNeighbours(
      this.db,
      {
        model,
        vector,
        filter: opts.filter,
        k: opts.k,
        ...(extra.preferProductId ? { preferProductId: extra.preferProductId } : {}),
        ...(extra.strategy ? { strategy: extra.strategy } : {}),
        imagesPerProduct: opts.imagesPerProduct,
        matchedPhotos: opts.matchedPhotos,
        vectorsPerProduct: this.estimator.vectorsPerProduct(model.id) ?? 1,
      },
      this.estimator,
    );
    const { neighbours, modelActive, ...plan } = result;
    // A model given by id may be inactive by design; only the cached active model must still be active.
    if (!modelActive && model.isActive) return null;
    metrics.searchStrategy(plan.strategy, plan.fellBack);
    const kept = opts.minScore === null ? neighbours : neighbours.filter((n) => 1 - n.distance >= opts.minScore!);
    const matches = kept.map((n) => productMatch(n.product, n.distance, n.images, calibrate(1 - n.distance)));
    return { matches, plan, model: model.id };
  }
}
