/**
 * One tagging run (a reindex_jobs row of kind 'tag'), run by the worker that claimed it on the reindex
 * machinery (runner.ts: queue, lease, heartbeat, resume, cancel): the taxonomy's label prompts are embedded
 * once, then the catalog is walked in keyset batches of products; each product's whole-photo vectors,
 * already stored, are classified with embedding/zero-shot.ts (SigLIP's per-label probability), and a label's
 * probability for the product is its best photo's. The best SUGGESTIONS_PER_PRODUCT labels are stored.
 *
 * Exactness as for a reindex: a batch's suggestions and the cursor commit in one transaction, fenced on
 * the worker and the running state; a resumed run continues after the last committed batch, and a batch
 * re-done replaces its rows.
 */
import type { Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import { advanceJob, finishJob, LostJobError, type ReindexError, type ReindexJob } from '../db/reindex-jobs.js';
import {
  countTagLeft,
  nextTagBatch,
  replaceSuggestions,
  SUGGESTIONS_PER_PRODUCT,
  type Suggestion,
  type TagBatchProduct,
} from '../db/tag-suggestions.js';
import type { DB, TagTaxonomy } from '../db/types.js';
import type { Embedder } from '../embedding/index.js';
import { classifyVector, DEFAULT_TEMPLATE, embedLabels, labelPrompts, type LabelSet } from '../embedding/zero-shot.js';
import type { ReindexContext } from './reindex.js';
import { StopRequested } from './reindex.js';

const MAX_ATTRIBUTE_CHARS = 64;
const RECOUNT_MS = 5000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The admin's taxonomy checked (BAD_USER_INPUT before anything is queued), labels deduplicated. */
export function checkTaxonomy(t: {
  attribute: string;
  labels: readonly string[];
  template?: string | null;
  onlyMissing?: boolean | null;
}): TagTaxonomy {
  const attribute = t.attribute.trim();
  if (!attribute || attribute.length > MAX_ATTRIBUTE_CHARS || /[\p{Cc}]/u.test(attribute))
    throw new AppError(ErrorCode.BAD_USER_INPUT, `attribute must be 1–${MAX_ATTRIBUTE_CHARS} printable characters`, { field: 'attribute' });
  const template = t.template ?? DEFAULT_TEMPLATE;
  const { labels } = labelPrompts(t.labels, template);
  return { attribute, labels, template, onlyMissing: t.onlyMissing ?? false };
}

/** A product's suggestions: each label's best probability over its photos, the most probable first. */
export function suggestFor(product: TagBatchProduct, set: LabelSet, probability: (score: number) => number | null): Suggestion[] {
  const best = new Map<string, { score: number; probability: number }>();
  for (const v of product.vectors) {
    for (const s of classifyVector(v, set, probability)) {
      const prev = best.get(s.label);
      if (s.probability !== null && (!prev || s.score > prev.score)) best.set(s.label, { score: s.score, probability: s.probability });
    }
  }
  return [...best.entries()]
    .sort((a, b) => b[1].score - a[1].score || a[0].localeCompare(b[0]))
    .slice(0, SUGGESTIONS_PER_PRODUCT)
    .map(([label, s], i) => ({ productId: product.productId, rank: i + 1, label, probability: s.probability, score: s.score }));
}

export type TagContext = Pick<ReindexContext, 'log' | 'workerId' | 'batchSize' | 'throttleMs' | 'stopping' | 'lost'> & { db: Kysely<DB> };

export async function runTagging(ctx: TagContext, job: ReindexJob, embedder: Embedder): Promise<void> {
  const { db, log, workerId } = ctx;
  const taxonomy = job.taxonomy;
  if (!taxonomy) throw new Error(`job ${job.id} has no taxonomy`);
  if (embedder.matchProbability(0) === null) throw new Error(`model ${job.modelId} has no calibration: no probabilities to suggest with`);
  // The labels' text vectors, once per run (a resumed run embeds them again: a few texts).
  const set = await embedLabels(embedder, taxonomy.labels, taxonomy.template);
  const probability = (score: number) => embedder.matchProbability(score);
  let cursor = job.cursor;
  let lastCount = Date.now();
  for (;;) {
    if (ctx.lost()) throw new LostJobError(`job ${job.id} was cancelled or taken over`);
    if (ctx.stopping()) throw new StopRequested();
    const batch = await nextTagBatch(db, {
      modelId: job.modelId,
      attribute: taxonomy.attribute,
      onlyMissing: taxonomy.onlyMissing,
      afterId: cursor,
      limit: ctx.batchSize,
    });
    if (batch.length === 0) break;
    const errors: ReindexError[] = [];
    const suggestions: Suggestion[] = [];
    for (const p of batch) {
      if (p.vectors.length === 0)
        errors.push({ productId: p.productId, sku: p.sku, message: `no vector of ${job.modelId}: reindex first` });
      else suggestions.push(...suggestFor(p, set, probability));
    }
    const next = batch.at(-1)!.productId;
    let total: number | undefined;
    if (Date.now() - lastCount > RECOUNT_MS) {
      lastCount = Date.now();
      total =
        job.processed +
        batch.length +
        (await countTagLeft(db, { attribute: taxonomy.attribute, onlyMissing: taxonomy.onlyMissing, afterId: next }));
    }
    await db.transaction().execute(async (trx) => {
      await advanceJob(trx, {
        jobId: job.id,
        workerId,
        cursor: next,
        processed: batch.length,
        failed: errors.length,
        errors,
        ...(total !== undefined ? { total } : {}),
      });
      await replaceSuggestions(trx, {
        attribute: taxonomy.attribute,
        modelId: job.modelId,
        jobId: job.id,
        productIds: batch.map((p) => p.productId),
        suggestions,
      });
    });
    job.processed += batch.length;
    cursor = next;
    if (ctx.throttleMs) await sleep(ctx.throttleMs);
  }
  if (!(await finishJob(db, job.id, workerId, { state: 'succeeded' }))) throw new LostJobError(`job ${job.id} was cancelled`);
  log.info({ job: job.id, attribute: taxonomy.attribute, processed: job.processed }, 'tagging finished');
}
