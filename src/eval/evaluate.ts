/**
 * Offline retrieval evaluation: queries whose right answer is known (a catalog image under a transform,
 * or a labelled photo) asked of each model through the same search path shoppers use
 * (SearchService.similarToImage: decode limits, admission gates, the one SQL statement), then the rank
 * at which each model found the product, as recall@1/5/10 and MRR overall, per category and per
 * transform. Used by `vps eval` (cli.ts) and the admin query evaluateModels (resolvers/eval.ts).
 */
import pLimit from 'p-limit';
import sharp from 'sharp';
import { originalImage, sampleProducts } from '../db/eval-samples.js';
import { getProductsByIds, getProductsBySkus, type Product } from '../db/products.js';
import type { Db } from '../db/types.js';
import { AppError, ErrorCode, badInput } from '../errors.js';
import type { ModelService } from '../models/service.js';
import type { SearchService } from '../search/service.js';
import { metricsBy, metricsOf, type Metrics } from './metrics.js';
import { applyTransform, DEFAULT_TRANSFORMS, type Transform } from './transforms.js';

export const MAX_EVAL_MODELS = 8;
/** Results searched per query: recall@10 needs the top 10. */
export const EVAL_K = 10;

export interface EvalDeps {
  db: Db;
  models: ModelService;
  search: SearchService;
}

/** A photo whose right answer is known: a product of the catalog. */
export interface LabelledQuery {
  /** e.g. a file name; shown in reports. */
  label: string;
  image: Buffer;
  productId?: string;
  sku?: string;
}

export interface EvalOptions {
  /** Model ids (1–8, distinct); none: every model that can answer (ready and loaded), the active one first. */
  models?: readonly string[] | null;
  /** Catalog images under these transforms (default DEFAULT_TRANSFORMS); ignored when `queries` is given. */
  transforms?: readonly Transform[] | null;
  /** How many catalog products to make queries from (default 200). */
  limit?: number;
  /** Only products of this category (queries and sample; results are not filtered). */
  category?: string | null;
  /** A labelled query set instead of transformed catalog images. */
  queries?: readonly LabelledQuery[] | null;
  /** Refused (BAD_USER_INPUT) when products × transforms × models would exceed it. */
  maxSearches?: number;
  /** Searches in flight at once (default 2): the admission gates bound them too. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface ModelHit {
  model: string;
  /** 1-based rank of the query's product; null when not in the top EVAL_K. */
  rank: number | null;
  top: Array<{ productId: string; score: number }>;
}

export interface QueryOutcome {
  /** The product the query should find. */
  product: Product;
  /** The transform, or 'labelled' for a labelled photo. */
  source: Transform | 'labelled';
  /** A labelled query's label (its file); null for a transformed catalog image. */
  label: string | null;
  /** A small JPEG of the query image as searched, for the HTML report (null with keepPreviews: false). */
  preview: Buffer | null;
  hits: ModelHit[];
}

export interface ModelEvaluation {
  model: string;
  active: boolean;
  overall: Metrics;
  byCategory: Array<{ category: string; metrics: Metrics }>;
  byTransform: Array<{ transform: string; metrics: Metrics }>;
}

export interface EvalReport {
  k: number;
  /** Distinct products the queries were made for. */
  products: number;
  queries: number;
  /** Queries left out because search refused their image (IMAGE_TOO_LARGE, INVALID_IMAGE). */
  skipped: number;
  /** The transforms used, or ['labelled']. */
  sources: string[];
  models: ModelEvaluation[];
  outcomes: QueryOutcome[];
  seconds: number;
}

export async function modelsToEvaluate(
  models: ModelService,
  given?: readonly string[] | null,
): Promise<Array<{ id: string; active: boolean }>> {
  let ids: string[];
  if (given?.length) {
    ids = given.map((m) => m.trim());
    if (new Set(ids).size !== ids.length) throw badInput('models must be distinct', { field: 'models' });
  } else {
    ids = (await models.list())
      .filter((m) => m.loaded && (m.isActive || m.status === 'ready'))
      .sort((x, y) => Number(y.isActive) - Number(x.isActive))
      .map((m) => m.id);
    if (ids.length === 0)
      throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'No model can answer queries: load one and index the catalog first.');
  }
  if (ids.length > MAX_EVAL_MODELS)
    throw badInput(`at most ${MAX_EVAL_MODELS} models are evaluated at once`, { field: 'models', max: MAX_EVAL_MODELS });
  // every model checked before any query runs: a typo costs no inference
  const out: Array<{ id: string; active: boolean }> = [];
  for (const id of ids) {
    const { model } = await models.servingModel(id);
    out.push({ id: model.id, active: model.isActive });
  }
  return out;
}

/**
 * One unit of work: a product and the queries made for it. A catalog product's original is read once,
 * when its unit runs, and changed by each transform in turn, so memory holds at most `concurrency`
 * originals whatever the sample size.
 */
interface Unit {
  product: Product;
  queries: () => Promise<Array<{ source: Transform | 'labelled'; label: string | null; image: Buffer }>>;
  count: number;
}

async function planUnits(deps: EvalDeps, opts: EvalOptions): Promise<Unit[]> {
  if (opts.queries?.length) {
    const byId = await getProductsByIds(
      deps.db,
      opts.queries.flatMap((q) => (q.productId != null && /^\d{1,18}$/.test(q.productId) ? [q.productId] : [])),
    );
    const bySku = await getProductsBySkus(
      deps.db,
      opts.queries.flatMap((q) => (q.sku != null ? [q.sku] : [])),
    );
    const units: Unit[] = [];
    for (const q of opts.queries) {
      const product = q.productId != null ? byId.get(q.productId) : q.sku != null ? bySku.get(q.sku) : undefined;
      if (!product)
        throw badInput(`query ${q.label}: no product ${q.productId ?? q.sku ?? '(none given)'} in the catalog`, { field: 'queries' });
      if (opts.category != null && product.category !== opts.category) continue;
      units.push({ product, count: 1, queries: () => Promise.resolve([{ source: 'labelled', label: q.label, image: q.image }]) });
    }
    return units;
  }
  const transforms = opts.transforms?.length ? [...new Set(opts.transforms)] : [...DEFAULT_TRANSFORMS];
  const limit = opts.limit ?? 200;
  if (!Number.isInteger(limit) || limit < 1) throw badInput('limit must be a positive integer', { field: 'limit' });
  const sample = await sampleProducts(deps.db, { limit, category: opts.category ?? null });
  return sample.map((product) => ({
    product,
    count: transforms.length,
    queries: async () => {
      const original = await originalImage(deps.db, product.id);
      if (!original) return []; // deleted meanwhile: nothing to ask
      const out: Array<{ source: Transform; label: null; image: Buffer }> = [];
      for (const t of transforms) out.push({ source: t, label: null, image: await applyTransform(original, t) });
      return out;
    },
  }));
}

/** The query as a small JPEG for the report (the full image is not kept: a sample may hold thousands). */
async function previewOf(image: Buffer): Promise<Buffer | null> {
  try {
    return await sharp(image, { failOn: 'error' })
      .rotate()
      .resize(128, 128, { fit: 'inside' })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 75 })
      .toBuffer();
  } catch {
    return null;
  }
}

/**
 * Runs the evaluation. `keepPreviews` (default true) keeps a small JPEG of each query image for the
 * HTML report; the admin query, which returns figures only, turns it off.
 */
export async function evaluateModels(deps: EvalDeps, opts: EvalOptions = {}, keepPreviews = true): Promise<EvalReport> {
  const started = performance.now();
  const models = await modelsToEvaluate(deps.models, opts.models);
  const units = await planUnits(deps, opts);
  const total = units.reduce((n, u) => n + u.count, 0) * models.length;
  if (opts.maxSearches != null && total > opts.maxSearches) {
    throw badInput(
      `this evaluation would run ${total} searches (queries × models); at most ${opts.maxSearches} are allowed here: lower limit, transforms or models`,
      { field: 'limit', requested: total, max: opts.maxSearches },
    );
  }
  const limiter = pLimit(Math.max(1, opts.concurrency ?? 2));
  let done = 0;
  let skipped = 0;
  const perUnit = await Promise.all(
    units.map((u) =>
      limiter(async (): Promise<QueryOutcome[]> => {
        opts.signal?.throwIfAborted();
        const out: QueryOutcome[] = [];
        for (const q of await u.queries()) {
          const hits: ModelHit[] = [];
          for (const m of models) {
            let matches;
            try {
              ({ matches } = await deps.search.similarToImage(
                { kind: 'bytes', bytes: q.image },
                { k: EVAL_K, model: m.id, ...(opts.signal ? { signal: opts.signal } : {}) },
              ));
            } catch (err) {
              // A query image search refuses (over SEARCH_IMAGE_MAX_PIXELS, undecodable) says nothing about
              // the models: it is left out of the figures for every model, and counted.
              if (err instanceof AppError && (err.code === ErrorCode.IMAGE_TOO_LARGE || err.code === ErrorCode.INVALID_IMAGE)) break;
              throw err;
            }
            const at = matches.findIndex((x) => x.product.id === u.product.id);
            hits.push({
              model: m.id,
              rank: at < 0 ? null : at + 1,
              top: matches.map((x) => ({ productId: x.product.id, score: x.score })),
            });
            opts.onProgress?.(++done, total);
          }
          if (hits.length < models.length) {
            skipped++;
            done += models.length - hits.length;
            continue;
          }
          out.push({ product: u.product, source: q.source, label: q.label, preview: keepPreviews ? await previewOf(q.image) : null, hits });
        }
        return out;
      }),
    ),
  );
  const outcomes = perUnit.flat();
  const evaluations: ModelEvaluation[] = models.map((m, i) => {
    const rank = (o: QueryOutcome) => o.hits[i]!.rank;
    return {
      model: m.id,
      active: m.active,
      overall: metricsOf(outcomes.map(rank)),
      byCategory: metricsBy(outcomes, (o) => o.product.category, rank).map((g) => ({ category: g.key, metrics: g.metrics })),
      byTransform: metricsBy(outcomes, (o) => o.source, rank).map((g) => ({ transform: g.key, metrics: g.metrics })),
    };
  });
  return {
    k: EVAL_K,
    products: new Set(outcomes.map((o) => o.product.id)).size,
    queries: outcomes.length,
    skipped,
    sources: [...new Set(outcomes.map((o) => o.source))],
    models: evaluations,
    outcomes,
    seconds: (performance.now() - started) / 1000,
  };
}
