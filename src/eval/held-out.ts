/**
 * Retrieval on a catalog of several photos per product (issue 22), `vps eval --held-out`: for each
 * sampled product with at least two photos, its last photo is held out (taken out of the catalog for the
 * ranking, so it is a view of the product the catalog does not show) and its vector is the query. Each
 * model's rank of the product is taken twice over the same vectors (db/eval-samples.ts heldOutRankings):
 *   - best photo: a product ranks by its best remaining photo or region, as search ranks products;
 *   - first photo only: by its first photo alone, what a catalog of one photo per product could answer.
 * recall@1/5/10 and MRR of both say what the extra photos are worth for shoppers' other views.
 *
 * Unlike the transformed-image evaluation (evaluate.ts), the rankings are exact statements over the
 * stored vectors rather than the shoppers' search path: the held-out photo is in the catalog and search
 * would find it. They measure the ranking rule, not the index (search's recall against exact is
 * bench/search/photos.ts's).
 */
import pLimit from 'p-limit';
import { heldOutRankings, sampleProducts } from '../db/eval-samples.js';
import type { Product } from '../db/products.js';
import { badInput } from '../errors.js';
import { EVAL_K, modelsToEvaluate, type EvalDeps } from './evaluate.js';
import { metricsOf, type Metrics } from './metrics.js';

export interface HeldOutOptions {
  /** Model ids (1–8, distinct); none: every model that can answer, the active one first. */
  models?: readonly string[] | null;
  /** How many products (with at least two photos) to hold a photo out of (default 200). */
  limit?: number;
  category?: string | null;
  /** Statements in flight at once (default 2). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface HeldOutModelEvaluation {
  model: string;
  active: boolean;
  /** Ranked by each product's best photo or region. */
  bestPhoto: Metrics;
  /** Ranked by each product's first photo alone. */
  firstPhoto: Metrics;
}

export interface HeldOutOutcome {
  product: Product;
  /** Per model: the product's 1-based rank under each rule; null when not in the top k. */
  ranks: Array<{ model: string; bestPhoto: number | null; firstPhoto: number | null }>;
}

export interface HeldOutReport {
  k: number;
  /** Products a photo was held out of (queries per model). */
  products: number;
  /** Sampled products left out because a model has no vector of their held-out photo. */
  skipped: number;
  models: HeldOutModelEvaluation[];
  outcomes: HeldOutOutcome[];
  seconds: number;
}

const rankOf = (ids: readonly string[], id: string) => {
  const at = ids.indexOf(id);
  return at < 0 ? null : at + 1;
};

export async function evaluateHeldOut(deps: EvalDeps, opts: HeldOutOptions = {}): Promise<HeldOutReport> {
  const started = performance.now();
  const models = await modelsToEvaluate(deps.models, opts.models);
  const limit = opts.limit ?? 200;
  if (!Number.isInteger(limit) || limit < 1) throw badInput('limit must be a positive integer', { field: 'limit' });
  const sample = await sampleProducts(deps.db, { limit, category: opts.category ?? null, minPhotos: 2 });
  const total = sample.length * models.length;
  const limiter = pLimit(Math.max(1, opts.concurrency ?? 2));
  let done = 0;
  const perProduct = await Promise.all(
    sample.map((product) =>
      limiter(async (): Promise<HeldOutOutcome | null> => {
        opts.signal?.throwIfAborted();
        const ranks: HeldOutOutcome['ranks'] = [];
        for (const m of models) {
          const r = await heldOutRankings(deps.db, { modelId: m.id, productId: product.id, k: EVAL_K });
          opts.onProgress?.(++done, total);
          if (!r) break;
          ranks.push({ model: m.id, bestPhoto: rankOf(r.bestPhoto, product.id), firstPhoto: rankOf(r.firstPhoto, product.id) });
        }
        // A product is in the figures only when every model could be asked (the same queries for all).
        if (ranks.length < models.length) {
          done += models.length - ranks.length - 1; // the models not asked after the one without a vector
          return null;
        }
        return { product, ranks };
      }),
    ),
  );
  const outcomes = perProduct.filter((o): o is HeldOutOutcome => o !== null);
  return {
    k: EVAL_K,
    products: outcomes.length,
    skipped: sample.length - outcomes.length,
    models: models.map((m, i) => ({
      model: m.id,
      active: m.active,
      bestPhoto: metricsOf(outcomes.map((o) => o.ranks[i]!.bestPhoto)),
      firstPhoto: metricsOf(outcomes.map((o) => o.ranks[i]!.firstPhoto)),
    })),
    outcomes,
    seconds: (performance.now() - started) / 1000,
  };
}

const pct = (x: number) => (x * 100).toFixed(1);

/** The table `vps eval --held-out` prints: per model, both rules side by side. */
export function formatHeldOutTable(report: HeldOutReport): string {
  const mw = Math.max(5, ...report.models.map((m) => m.model.length));
  const head = `${'model'.padEnd(mw)}  ${'ranking'.padEnd(16)}  ${'queries'.padStart(7)}  ${'R@1'.padStart(6)}  ${'R@5'.padStart(6)}  ${'R@10'.padStart(6)}  ${'MRR'.padStart(6)}`;
  const lines = [head, '-'.repeat(head.length)];
  for (const m of report.models) {
    for (const [rule, x] of [
      ['best photo', m.bestPhoto],
      ['first photo only', m.firstPhoto],
    ] as const) {
      lines.push(
        `${m.model.padEnd(mw)}  ${rule.padEnd(16)}  ${String(x.queries).padStart(7)}  ${pct(x.recallAt1).padStart(6)}  ${pct(x.recallAt5).padStart(6)}  ${pct(x.recallAt10).padStart(6)}  ${x.mrr.toFixed(3).padStart(6)}`,
      );
    }
  }
  lines.push(
    '',
    `${report.products} products, each queried with its last photo held out of the catalog; exact rankings, top ${report.k}; ` +
      `recall in %, MRR@${report.k}; ${report.seconds.toFixed(1)} s` +
      (report.skipped ? `; ${report.skipped} sampled products left out (a model has no vector of their held-out photo)` : ''),
  );
  return lines.join('\n');
}
