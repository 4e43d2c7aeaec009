/** Catalog intelligence (issue 25): tagging runs, suggestions and their acceptance, near-duplicate groups. */
import { AppError, ErrorCode, badInput } from '../errors.js';
import { getDuplicateScan, listDuplicateGroups, scanDuplicates, type DuplicateScan as Scan } from '../db/duplicates.js';
import { getActiveModel, getModel } from '../db/models.js';
import { getProductsByIds } from '../db/products.js';
import { getReindexJob, type ReindexJob as Job } from '../db/reindex-jobs.js';
import { acceptSuggestions, listSuggestions } from '../db/tag-suggestions.js';
import type { DuplicateScan, Resolvers, TagJob } from '../schema/generated.js';
import { jobProgressDto } from './admin.js';
import { requireAdmin } from './auth.js';

function tagJobDto(j: Job): TagJob {
  const t = j.taxonomy!;
  return {
    id: j.id,
    model: j.modelId,
    attribute: t.attribute,
    labels: t.labels,
    template: t.template,
    onlyMissing: t.onlyMissing,
    ...jobProgressDto(j),
  };
}

function scanDto(s: Scan): DuplicateScan {
  return {
    model: s.modelId,
    threshold: s.threshold,
    neighbours: s.neighbours,
    products: s.products,
    pairs: s.pairs,
    groups: s.groups,
    durationMs: s.durationMs,
    scannedAt: s.scannedAt,
  };
}

const cursorOf = (groupId: string) => Buffer.from(`g:${groupId}`).toString('base64url');
function groupAfter(after: string | null | undefined): string {
  if (!after) return '0';
  const m = /^g:(\d{1,18})$/.exec(Buffer.from(after, 'base64url').toString());
  if (!m) throw new AppError(ErrorCode.INVALID_CURSOR, 'after is not a cursor of duplicateGroups', { field: 'after' });
  return m[1]!;
}

export const intelligenceResolvers: Resolvers = {
  Query: {
    tagJob: async (_, { id }, ctx) => {
      requireAdmin(ctx);
      const job = await getReindexJob(ctx.services.database.db, id);
      return job?.kind === 'tag' ? tagJobDto(job) : null;
    },
    tagSuggestions: async (_, { attribute, productId, minProbability, first }, ctx) => {
      requireAdmin(ctx);
      const limit = first ?? 50;
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw badInput('first must be between 1 and 500', { field: 'first' });
      if (productId != null && !/^\d{1,18}$/.test(productId)) return [];
      const rows = await listSuggestions(ctx.services.database.db, {
        attribute,
        productId: productId ?? null,
        minProbability: minProbability ?? null,
        limit,
      });
      return rows.map((r) => ({ ...r, model: r.modelId }));
    },
    duplicateGroups: async (_, { model, first, after }, ctx) => {
      requireAdmin(ctx);
      const db = ctx.services.database.db;
      const limit = first ?? 20;
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badInput('first must be between 1 and 100', { field: 'first' });
      const m = model ? await getModel(db, model) : await getActiveModel(db);
      if (!m) throw new AppError(ErrorCode.NOT_FOUND, model ? `No model ${model}` : 'No model is active', { field: 'model' });
      const scan = await getDuplicateScan(db, m.id);
      if (!scan)
        throw new AppError(ErrorCode.NOT_FOUND, `Model ${m.id} has not been scanned for duplicates: run scanDuplicates`, {
          field: 'model',
        });
      const page = await listDuplicateGroups(db, { modelId: m.id, afterGroup: groupAfter(after), first: limit });
      const products = await getProductsByIds(db, [...new Set(page.groups.flatMap((g) => g.productIds))]);
      return {
        scan: scanDto(scan),
        groups: page.groups.map((g) => ({
          id: g.id,
          // A product deleted since the scan has left its group (ON DELETE CASCADE); one deleted meanwhile is skipped.
          products: g.productIds.flatMap((id) => products.get(id) ?? []),
          pairs: g.pairs,
          maxScore: g.maxScore,
        })),
        endCursor: page.hasMore ? cursorOf(page.groups.at(-1)!.id) : null,
      };
    },
  },
  Mutation: {
    tagCatalog: async (_, args, ctx) => {
      requireAdmin(ctx);
      return tagJobDto(
        await ctx.services.jobs.enqueueTagging({
          model: args.model ?? null,
          attribute: args.attribute,
          labels: args.labels,
          template: args.template ?? null,
          onlyMissing: args.onlyMissing ?? false,
        }),
      );
    },
    cancelTagging: async (_, { id }, ctx) => {
      requireAdmin(ctx);
      const job = await getReindexJob(ctx.services.database.db, id);
      if (job?.kind !== 'tag') throw new AppError(ErrorCode.NOT_FOUND, `No tagging run ${id}`, { field: 'id' });
      return tagJobDto(await ctx.services.jobs.cancel(id));
    },
    acceptSuggestions: async (_, { attribute, minProbability }, ctx) => {
      requireAdmin(ctx);
      if (!(minProbability >= 0 && minProbability <= 1))
        throw badInput('minProbability must be between 0 and 1', { field: 'minProbability' });
      const a = await ctx.services.database.db
        .transaction()
        .execute((trx) => acceptSuggestions(trx, { attribute: attribute.trim(), minProbability }));
      ctx.services.log.info({ acceptance: a.id, attribute: a.attribute, accepted: a.accepted, skipped: a.skipped }, 'suggestions accepted');
      return { ...a, target: a.target.toUpperCase() };
    },
    scanDuplicates: async (_, { model, threshold, neighbours }, ctx) => {
      requireAdmin(ctx);
      const db = ctx.services.database.db;
      const m = model ? await getModel(db, model) : await getActiveModel(db);
      if (!m) throw new AppError(ErrorCode.NOT_FOUND, model ? `No model ${model}` : 'No model is active', { field: 'model' });
      return scanDto(await scanDuplicates(db, m, { threshold: threshold ?? null, neighbours: neighbours ?? null }));
    },
  },
};
