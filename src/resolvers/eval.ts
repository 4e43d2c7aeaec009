import { AppError, ErrorCode, badInput } from '../errors.js';
import { evaluateModels, type EvalReport } from '../eval/evaluate.js';
import type { Transform } from '../eval/transforms.js';
import type { EvalTransform, ModelEvaluationReport, Resolvers } from '../schema/generated.js';
import type { Services } from '../services.js';
import { requireAdmin } from './auth.js';

/** The admin query's bounds: an evaluation is many searches, so a caller gets a small one at a time. */
export const EVAL_MAX_LIMIT = 100;
export const EVAL_MAX_SEARCHES = 1000;

// One evaluation at a time per process (keyed by the services, so each test service has its own): a
// second one, e.g. aliased in the same operation, would only double the load the bounds are there to cap.
const running = new WeakSet<Services>();

const toTransform = (t: EvalTransform) => t.toLowerCase() as Transform;
const fromTransform = (t: string) => t.toUpperCase() as EvalTransform;

function reportDto(r: EvalReport): ModelEvaluationReport {
  return {
    k: r.k,
    products: r.products,
    queries: r.queries,
    skipped: r.skipped,
    transforms: r.sources.map(fromTransform),
    seconds: r.seconds,
    models: r.models.map((m) => ({
      model: m.model,
      active: m.active,
      overall: m.overall,
      byCategory: m.byCategory,
      byTransform: m.byTransform.map((t) => ({ transform: fromTransform(t.transform), metrics: t.metrics })),
    })),
  };
}

export const evalResolvers: Resolvers = {
  Query: {
    evaluateModels: async (_, { models, transforms, limit, category }, ctx) => {
      requireAdmin(ctx);
      const n = limit ?? 20;
      if (!Number.isInteger(n) || n < 1 || n > EVAL_MAX_LIMIT)
        throw badInput(`limit must be between 1 and ${EVAL_MAX_LIMIT}`, { field: 'limit', max: EVAL_MAX_LIMIT });
      if (running.has(ctx.services)) {
        throw new AppError(ErrorCode.OVERLOADED, 'An evaluation is already running in this process; retry when it has finished.', {
          stage: 'eval',
          reason: 'queue_full',
          retryAfterSeconds: 5,
        });
      }
      running.add(ctx.services);
      try {
        const report = await evaluateModels(
          { db: ctx.services.database.db, models: ctx.services.models, search: ctx.services.search },
          {
            models: models ?? null,
            transforms: transforms?.map(toTransform) ?? null,
            limit: n,
            category: category ?? null,
            maxSearches: EVAL_MAX_SEARCHES,
            concurrency: 2,
            ...(ctx.signal ? { signal: ctx.signal } : {}),
          },
          false,
        );
        return reportDto(report);
      } finally {
        running.delete(ctx.services);
      }
    },
  },
};
