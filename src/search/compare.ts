/**
 * compareModels: one image or text query, with the same filters and k, answered by two or more models,
 * and how far their top k agree. It lives in search/ rather than models/ because it is a search: it runs
 * the search service once per model and only reads the registry (models/ owns the lifecycle).
 *
 * Overlap per pair of models, over the top k product ids each returned:
 *   shared       products in both lists, in the first model's order
 *   jaccard      |A ∩ B| / |A ∪ B| (1: the same products, 0: none in common; two empty lists count as 1)
 *   correlation  Spearman's rank correlation of the shared products' ranks, each list re-ranked among the
 *                shared ones only (so it measures "do they order what they agree on alike"); null under 2
 */
import { badInput } from '../errors.js';
import type { EmbeddingModel } from '../db/models.js';
import type { FetchImageOptions } from '../images/fetch.js';
import { loadImageBytes } from '../images/source.js';
import type { ModelService } from '../models/service.js';
import type { QueryImage } from '../catalog/validate.js';
import type { ProductMatch, SearchArgs, SearchService } from './service.js';

export const MAX_COMPARED_MODELS = 8;

export type CompareQuery = { kind: 'text'; text: string } | { kind: 'image'; image: QueryImage };

export interface ModelRun {
  model: EmbeddingModel;
  matches: ProductMatch[];
}

export interface PairOverlap {
  a: string;
  b: string;
  /** Product ids in both top-k lists, in a's order. */
  shared: string[];
  jaccard: number;
  rankCorrelation: number | null;
}

export interface Comparison {
  k: number;
  runs: ModelRun[];
  /** One entry per pair of models, in the order the models were given. */
  pairs: PairOverlap[];
  /** Product ids every model returned, in the first model's order. */
  sharedByAll: string[];
}

export function jaccard(a: readonly string[], b: readonly string[]): number {
  const A = new Set(a);
  const B = new Set(b);
  let both = 0;
  for (const x of A) if (B.has(x)) both++;
  const union = A.size + B.size - both;
  return union === 0 ? 1 : both / union;
}

/** Spearman's rho of the items both lists hold, ranked among themselves; null with fewer than 2 shared. */
export function sharedRankCorrelation(a: readonly string[], b: readonly string[]): number | null {
  const inB = new Set(b);
  const sharedA = a.filter((x) => inB.has(x));
  const m = sharedA.length;
  if (m < 2) return null;
  const inA = new Set(sharedA);
  const rankB = new Map(b.filter((x) => inA.has(x)).map((x, i) => [x, i] as const));
  let d2 = 0;
  sharedA.forEach((x, i) => {
    const d = i - rankB.get(x)!;
    d2 += d * d;
  });
  // no ties: ranks are positions in duplicate-free lists
  return 1 - (6 * d2) / (m * (m * m - 1));
}

export function overlapOf(runs: ReadonlyArray<{ id: string; productIds: string[] }>): { pairs: PairOverlap[]; sharedByAll: string[] } {
  const pairs: PairOverlap[] = [];
  for (let i = 0; i < runs.length; i++) {
    for (let j = i + 1; j < runs.length; j++) {
      const a = runs[i]!;
      const b = runs[j]!;
      const inB = new Set(b.productIds);
      pairs.push({
        a: a.id,
        b: b.id,
        shared: a.productIds.filter((x) => inB.has(x)),
        jaccard: jaccard(a.productIds, b.productIds),
        rankCorrelation: sharedRankCorrelation(a.productIds, b.productIds),
      });
    }
  }
  const sets = runs.slice(1).map((r) => new Set(r.productIds));
  const sharedByAll = (runs[0]?.productIds ?? []).filter((x) => sets.every((s) => s.has(x)));
  return { pairs, sharedByAll };
}

export class CompareService {
  constructor(
    private readonly search: SearchService,
    private readonly models: ModelService,
    private readonly fetchOptions: FetchImageOptions,
  ) {}

  /**
   * `models`: 2–8 distinct model ids; none given: every model that can answer (ready and loaded), which
   * must be at least two. Each must be servable (MODEL_UNAVAILABLE otherwise, before anything runs).
   */
  async compare(query: CompareQuery, args: Omit<SearchArgs, 'model' | 'strategy'>, models?: readonly string[] | null): Promise<Comparison> {
    const ids = models?.length ? models.map((m) => m.trim()) : await this.servableIds();
    if (new Set(ids).size !== ids.length) throw badInput('models must be distinct', { field: 'models' });
    if (ids.length < 2 || ids.length > MAX_COMPARED_MODELS) {
      throw badInput(
        models?.length
          ? `compareModels takes 2 to ${MAX_COMPARED_MODELS} models`
          : `compareModels needs at least two models that can answer queries (found ${ids.length}); name them in models`,
        { field: 'models', max: MAX_COMPARED_MODELS },
      );
    }
    // Every model checked before any query runs: a typo costs no inference.
    for (const id of ids) await this.models.servingModel(id);
    // A URL is fetched once, so every model sees the same bytes (and the merchant's server one request).
    let q = query;
    if (q.kind === 'image' && q.image.kind === 'url') {
      q = { kind: 'image', image: { kind: 'bytes', bytes: await loadImageBytes(q.image, this.fetchOptions) } };
    }
    const fixed = q;
    const runs = await Promise.all(
      ids.map(async (id) => {
        const outcome =
          fixed.kind === 'text'
            ? await this.search.similarToText(fixed.text, { ...args, model: id })
            : await this.search.similarToImage(fixed.image, { ...args, model: id });
        return { model: (await this.models.servingModel(id)).model, matches: outcome.matches };
      }),
    );
    const { pairs, sharedByAll } = overlapOf(runs.map((r) => ({ id: r.model.id, productIds: r.matches.map((m) => m.product.id) })));
    return { k: args.k ?? 10, runs, pairs, sharedByAll };
  }

  private async servableIds(): Promise<string[]> {
    const list = await this.models.list();
    // the active model first: it is the baseline the others are compared with
    return list
      .filter((m) => m.loaded && (m.isActive || m.status === 'ready'))
      .sort((x, y) => Number(y.isActive) - Number(x.isActive))
      .map((m) => m.id);
  }
}
