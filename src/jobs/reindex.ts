/**
 * One reindex job, run by the worker that claimed it: walk the catalog in keyset batches, embed each batch
 * through the engine (one embedImages call per batch, which the engine splits into its own batches),
 * commit vectors and progress together, sweep what was missed, build the HNSW index, switch atomically.
 *
 * The walk is over stored photos (migration 0010: the cursor is a photo id, progress counts photos); a
 * photo's vectors (whole and regions) are written together.
 * Exactness: vectors are keyed (photo, model, region), so a batch re-done after a crash overwrites, never
 * duplicates; progress (the cursor) is committed in the same transaction as the batch's vectors, so a
 * resumed job continues exactly after the last committed batch. Every commit is fenced on the worker id
 * and the running state: a cancelled or taken-over job stops at its next commit.
 */
import type { Kysely, Transaction } from 'kysely';
import { AppError } from '../errors.js';
import type { Database } from '../db/connect.js';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from '../images/decode.js';
import { embedPhotos } from '../images/regions.js';
import {
  countLeft,
  countMissing,
  countModelVectors,
  insertComputedVectors,
  nextCatalogBatch,
  type CatalogImage,
  type ComputedVector,
} from '../db/embeddings.js';
import { getModel } from '../db/models.js';
import { countTagLeft } from '../db/tag-suggestions.js';
import {
  advanceJob,
  claimReindexJob,
  finishJob,
  LostJobError,
  setTotal,
  startSweep,
  type ReindexError,
  type ReindexJob,
} from '../db/reindex-jobs.js';
import type { DB } from '../db/types.js';
import type { Embedder } from '../embedding/index.js';
import type { Logger } from '../log.js';
import { metrics } from '../metrics/index.js';
import { dropCategoryIndexes, syncCategoryIndexes, type CategoryIndexPolicy } from '../models/category-indexes.js';
import { buildModelIndex, dropModelIndex } from '../models/hnsw.js';
import { markBuildEnded, markBuilding, switchActiveModel } from '../models/lifecycle.js';

/** Passes over the catalog: the walk, then at most this many sweeps for products still missing. */
const MAX_PASSES = 3;
/** How often the remaining count (for total and ETA) is re-taken. */
const RECOUNT_MS = 5000;

export interface ReindexContext {
  db: Kysely<DB>;
  log: Logger;
  workerId: string;
  batchSize: number;
  throttleMs: number;
  /** The backend: decides how the index is built (models/hnsw.ts, buildsIndexConcurrently). */
  kind: Database['kind'];
  /** Drop a fresh model's index for the bulk load and build it once at the end (default true; benchmarks compare). */
  deferIndex?: boolean;
  /** Decode limits for the stored originals (default: the service's defaults). */
  imageLimits?: ImageLimits;
  /** Which categories get an HNSW index of their own once the model's index is built (default policy). */
  categoryIndexes?: CategoryIndexPolicy;
  /** True once the job should stop at the next batch boundary (service stopping). */
  stopping(): boolean;
  /** True once the heartbeat found the job cancelled or taken over. */
  lost(): boolean;
}

export class StopRequested extends Error {
  override name = 'StopRequested';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Embeds a batch of photos (each whole and each of its regions); a photo the engine rejects is recorded
 * (with its product) and left out, the rest go on.
 */
export async function embedIsolatingFailures(
  embedder: Embedder,
  batch: CatalogImage[],
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<{ vectors: ComputedVector[]; errors: ReindexError[] }> {
  let todo = batch;
  const errors: ReindexError[] = [];
  while (todo.length) {
    try {
      const out = await embedPhotos(
        embedder,
        todo.map((b) => ({ bytes: b.original, regions: b.regions })),
        limits,
      );
      const vectors = todo.flatMap((b, i) =>
        out[i]!.map((embedding, region) => ({ productId: b.productId, imageId: b.imageId, region, sha256: b.sha256, embedding })),
      );
      return { vectors, errors };
    } catch (err) {
      const index = err instanceof AppError && typeof err.details?.index === 'number' ? err.details.index : -1;
      const bad = todo[index];
      if (!bad) throw err;
      errors.push({
        productId: bad.productId,
        sku: bad.sku,
        message: `${(err as AppError).code}: ${(err as Error).message} (photo ${bad.imageId})`,
      });
      todo = todo.filter((b) => b !== bad);
    }
  }
  return { vectors: [], errors };
}

/**
 * One batch, in the caller's transaction: the job row (fenced on this worker: LostJobError otherwise) and
 * the batch's vectors, so a resumed job continues exactly after the last batch whose vectors are stored.
 */
export async function commitBatch(
  trx: Transaction<DB>,
  b: Parameters<typeof advanceJob>[1] & { modelId: string; vectors: ComputedVector[] },
): Promise<void> {
  const { modelId, vectors, ...progress } = b;
  await advanceJob(trx, progress);
  await insertComputedVectors(trx, modelId, vectors);
}

/**
 * Takes the job (a reindex or a tagging run) for this worker (claimReindexJob) and, on its first pass, counts what is left to do, in
 * one transaction: a job shows RUNNING only with its total. Counted after the claim (in runReindex), the
 * API showed a half-started job, RUNNING with total 0, for as long as the worker took to mark the model
 * building and drop its indexes (seconds on a loaded machine: reindex.test.ts read it so).
 */
export async function claimJob(db: Kysely<DB>, id: string, workerId: string, leaseSeconds: number): Promise<ReindexJob | null> {
  return db.transaction().execute(async (trx) => {
    const job = await claimReindexJob(trx, id, workerId, leaseSeconds);
    if (job?.pass === 1) {
      const left = job.taxonomy
        ? await countTagLeft(trx, { attribute: job.taxonomy.attribute, onlyMissing: job.taxonomy.onlyMissing, afterId: job.cursor })
        : await countLeft(trx, { modelId: job.modelId, afterId: job.cursor, onlyMissing: job.onlyMissing });
      job.total = job.processed + left;
      await setTotal(trx, job.id, job.total);
    }
    return job;
  });
}

export async function runReindex(ctx: ReindexContext, job: ReindexJob, embedder: Embedder): Promise<{ activated: boolean }> {
  const { db, log, workerId } = ctx;
  const model = await getModel(db, job.modelId);
  if (!model) throw new Error(`model ${job.modelId} is no longer registered`);
  await markBuilding(db, model);

  // Bulk load without the model's HNSW index when the model has no vectors yet: building it once after
  // the load is much faster than maintaining it row by row (BENCHMARKS.md, "Reindex").
  if (ctx.deferIndex !== false && !model.isActive && job.pass === 1 && job.cursor === '0' && !(await countModelVectors(db)).get(model.id)) {
    await dropModelIndex(db, model.id);
    await dropCategoryIndexes(db, model.id);
  }

  let cursor = job.cursor;
  let pass = job.pass;
  let failed = job.failed;
  let lastCount = 0;
  for (let attempt = 0; ; attempt++) {
    for (;;) {
      if (ctx.lost()) throw new LostJobError(`job ${job.id} was cancelled or taken over`);
      if (ctx.stopping()) throw new StopRequested();
      const sweep = pass > 1;
      const onlyMissing = job.onlyMissing || sweep;
      const batch = await nextCatalogBatch(db, { modelId: model.id, afterId: cursor, limit: ctx.batchSize, onlyMissing });
      if (batch.length === 0) {
        const missing = await countMissing(db, model.id);
        // Products missed by the walk (committed late with a lower id, or re-imaged by a writer without this
        // model loaded): sweep again, unless all that is missing are images the engine rejected.
        if (missing > failed && pass < MAX_PASSES) {
          await startSweep(db, job.id, workerId);
          pass++;
          cursor = '0';
          log.info({ job: job.id, model: model.id, missing, pass }, 'reindex: sweeping products still missing a vector');
          continue;
        }
        break;
      }
      const { vectors, errors } = await embedIsolatingFailures(embedder, batch, ctx.imageLimits);
      const next = batch.at(-1)!.imageId;
      let total: number | undefined;
      if (!sweep && Date.now() - lastCount > RECOUNT_MS) {
        lastCount = Date.now();
        total = job.processed + batch.length + (await countLeft(db, { modelId: model.id, afterId: next, onlyMissing }));
      }
      await db.transaction().execute((trx) =>
        commitBatch(trx, {
          jobId: job.id,
          workerId,
          modelId: model.id,
          cursor: next,
          processed: sweep ? batch.length - errors.length : batch.length,
          failed: sweep ? 0 : errors.length,
          errors: sweep ? [] : errors,
          vectors,
          ...(total !== undefined ? { total } : {}),
        }),
      );
      job.processed += sweep ? batch.length - errors.length : batch.length;
      if (!sweep) failed += errors.length;
      metrics.reindexProgress(model.id, job.processed, total ?? job.total, sweep ? 0 : errors.length);
      cursor = next;
      if (ctx.throttleMs) await sleep(ctx.throttleMs);
    }

    const missing = await countMissing(db, model.id);
    if (missing > 0) {
      const error = `${missing} product(s) have no vector for ${model.id} (see errors): not activated. Fix or delete them, then run reindex(model: "${model.id}", onlyMissing: true).`;
      if (!(await finishJob(db, job.id, workerId, { state: 'failed', error }))) throw new LostJobError(`job ${job.id} was cancelled`);
      await markBuildEnded(db, model.id);
      return { activated: false };
    }
    const t0 = Date.now();
    await buildModelIndex(db, model, ctx.kind);
    log.info({ job: job.id, model: model.id, ms: Date.now() - t0 }, 'reindex: index ready');
    const t1 = Date.now();
    const categories = await syncCategoryIndexes(db, model, ctx.kind, ctx.categoryIndexes);
    log.info({ job: job.id, model: model.id, ms: Date.now() - t1, ...categories }, 'reindex: category indexes ready');
    if (ctx.lost()) throw new LostJobError(`job ${job.id} was cancelled or taken over`);

    if (!job.activate || model.isActive) {
      if (!(await finishJob(db, job.id, workerId, { state: 'succeeded' }))) throw new LostJobError(`job ${job.id} was cancelled`);
      await markBuildEnded(db, model.id);
      return { activated: false };
    }

    // The switch: job row and active model in one transaction, only if nothing is missing at that instant.
    const switched = await db.transaction().execute(async (trx) => {
      const r = await switchActiveModel(trx, model.id);
      if (r.missing > 0 || r.index !== 'valid') return r;
      if (!(await finishJob(trx, job.id, workerId, { state: 'succeeded', activated: true })))
        throw new LostJobError(`job ${job.id} was cancelled`);
      return r;
    });
    if (switched.missing === 0 && switched.index === 'valid') {
      log.info({ job: job.id, model: model.id }, 'reindex: switched the active model');
      return { activated: true };
    }
    if (attempt >= 2) throw new Error(`could not switch to ${model.id}: ${switched.missing} product(s) missing, index ${switched.index}`);
    // Products written between the last batch and the switch: one more sweep.
    await startSweep(db, job.id, workerId);
    pass++;
    cursor = '0';
  }
}
