import { AppError, ErrorCode } from '../errors.js';
import type { ReindexJob as Job, ReindexState } from '../db/reindex-jobs.js';
import { getReindexJob, listReindexJobs } from '../db/reindex-jobs.js';
import type { ModelRecord } from '../models/service.js';
import { modelCoverage } from '../db/embeddings.js';
import type { ModelStatus, RegisteredModel, ReindexJobState, Resolvers } from '../schema/generated.js';
import type { ReindexJobParent } from './parents.js';
import { requireAdmin } from './auth.js';

const up = <T extends string>(s: string) => s.toUpperCase() as T;

/** A running job's rate (items per second in this run) and the seconds left at that rate. */
function jobRate(j: Job, now: number): { rate: number | null; etaSeconds: number | null } {
  if (j.state !== 'running' || !j.runStartedAt) return { rate: null, etaSeconds: null };
  const secs = (now - j.runStartedAt.getTime()) / 1000;
  const done = j.processed - j.runProcessed;
  if (!(secs > 0 && done > 0)) return { rate: null, etaSeconds: null };
  const rate = done / secs;
  return { rate, etaSeconds: Math.max(0, j.total - j.processed) / rate };
}

/** What every job of the runner shows (a reindex and a tagging run alike): state, progress, rate, errors, times. */
export function jobProgressDto(j: Job, now = Date.now()) {
  return {
    state: up<ReindexJobState>(j.state),
    processed: j.processed,
    total: Math.max(j.total, j.processed),
    failed: j.failed,
    ...jobRate(j, now),
    errors: j.errors.map((e) => ({ productId: e.productId, sku: e.sku, message: e.message })),
    error: j.error,
    attempts: j.attempts,
    createdAt: j.createdAt,
    startedAt: j.startedAt,
    finishedAt: j.finishedAt,
  };
}

export function reindexJobDto(j: Job, now = Date.now()): ReindexJobParent {
  return {
    id: j.id,
    model: j.modelId,
    onlyMissing: j.onlyMissing,
    activate: j.activate,
    activated: j.activated,
    ...jobProgressDto(j, now),
  };
}

function modelDto(m: ModelRecord): RegisteredModel {
  return {
    id: m.id,
    source: m.source,
    variant: m.variant,
    dimension: m.dimension,
    status: up<ModelStatus>(m.status),
    active: m.isActive,
    loaded: m.loaded,
    vectors: m.vectors,
    keepCurrent: m.keepCurrent,
    createdAt: m.createdAt,
    activatedAt: m.activatedAt,
  };
}

export const adminResolvers: Resolvers = {
  Query: {
    models: async (_, __, ctx) => {
      requireAdmin(ctx);
      return (await ctx.services.models.list()).map(modelDto);
    },
    reindexJob: async (_, { id }, ctx) => {
      requireAdmin(ctx);
      const job = await getReindexJob(ctx.services.database.db, id);
      return job?.kind === 'reindex' ? reindexJobDto(job) : null;
    },
    reindexJobs: async (_, { state, model, first }, ctx) => {
      requireAdmin(ctx);
      const limit = first ?? 20;
      if (!Number.isInteger(limit) || limit < 1 || limit > 200)
        throw new AppError(ErrorCode.BAD_USER_INPUT, 'first must be between 1 and 200', { field: 'first' });
      const jobs = await listReindexJobs(ctx.services.database.db, {
        state: state ? (state.toLowerCase() as ReindexState) : null,
        model: model ?? null,
        limit,
        kind: 'reindex',
      });
      return jobs.map((j) => reindexJobDto(j));
    },
  },
  ReindexJob: {
    // The jobs' parents come from admin-only fields (requireAdmin above): the primary, as they are.
    coverage: (job, _, ctx) => modelCoverage(ctx.services.database.db, job.model),
  },
  Mutation: {
    reindex: async (_, args, ctx) => {
      requireAdmin(ctx);
      return reindexJobDto(
        await ctx.services.jobs.enqueueReindex({
          model: args.model ?? null,
          onlyMissing: args.onlyMissing ?? false,
          activate: args.activate ?? true,
        }),
      );
    },
    cancelReindex: async (_, { id }, ctx) => {
      requireAdmin(ctx);
      // A tagging run shares the jobs' table: cancelTagging cancels it.
      if ((await getReindexJob(ctx.services.database.db, id))?.kind === 'tag')
        throw new AppError(ErrorCode.NOT_FOUND, `No reindex job ${id} (it is a tagging run: cancelTagging)`, { field: 'id' });
      return reindexJobDto(await ctx.services.jobs.cancel(id));
    },
    activateModel: async (_, { model }, ctx) => {
      requireAdmin(ctx);
      const { models } = ctx.services;
      await models.activate(model, { requireLoaded: true });
      return modelDto((await models.record(model))!);
    },
    dropModelEmbeddings: async (_, { model }, ctx) => {
      requireAdmin(ctx);
      return ctx.services.models.dropEmbeddings(model);
    },
    setModelKeepCurrent: async (_, { model, keep }, ctx) => {
      requireAdmin(ctx);
      await ctx.services.models.setKeepCurrent(model, keep);
      return modelDto((await ctx.services.models.record(model))!);
    },
  },
};
