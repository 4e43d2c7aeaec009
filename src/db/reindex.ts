/**
 * The reindex repository: reindex_jobs rows, the keyset walk over the catalog, fenced batch commits,
 * the completeness check and the atomic switch of the active model. The only SQL of src/jobs lives here.
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import { vectorLiteral } from './embeddings.js';
import { modelIndexName } from './models.js';
import type { DB, ReindexJobsTable } from './types.js';

type Db = Kysely<DB> | Transaction<DB>;

export type ReindexState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const OPEN_STATES: ReindexState[] = ['queued', 'running'];
export const MAX_RECORDED_ERRORS = 100;

export interface ReindexError {
  productId: string;
  sku: string | null;
  message: string;
}

export interface ReindexJob {
  id: string;
  modelId: string;
  onlyMissing: boolean;
  activate: boolean;
  state: ReindexState;
  queueJobId: string | null;
  total: number;
  processed: number;
  failed: number;
  cursor: string;
  pass: number;
  errors: ReindexError[];
  error: string | null;
  activated: boolean;
  attempts: number;
  workerId: string | null;
  heartbeatAt: Date | null;
  runStartedAt: Date | null;
  runProcessed: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

const date = (d: Date | string | null) => (d == null ? null : new Date(d));

function toJob(r: Selectable<ReindexJobsTable>): ReindexJob {
  return {
    id: String(r.id),
    modelId: r.model_id,
    onlyMissing: r.only_missing,
    activate: r.activate,
    state: r.state,
    queueJobId: r.queue_job_id,
    total: r.total,
    processed: r.processed,
    failed: r.failed,
    cursor: String(r.cursor),
    pass: r.pass,
    errors: r.errors,
    error: r.error,
    activated: r.activated,
    attempts: r.attempts,
    workerId: r.worker_id,
    heartbeatAt: date(r.heartbeat_at),
    runStartedAt: date(r.run_started_at),
    runProcessed: r.run_processed,
    createdAt: new Date(r.created_at),
    startedAt: date(r.started_at),
    finishedAt: date(r.finished_at),
  };
}

const isUniqueViolation = (e: unknown) => typeof e === 'object' && e !== null && (e as { code?: string }).code === '23505';

/** A new queued job; CONFLICT when the model already has a queued or running one. */
export async function insertReindexJob(db: Db, j: { modelId: string; onlyMissing: boolean; activate: boolean }): Promise<ReindexJob> {
  const open = await db
    .selectFrom('reindex_jobs')
    .select('id')
    .where('model_id', '=', j.modelId)
    .where('state', 'in', OPEN_STATES)
    .executeTakeFirst();
  const conflict = (id?: string) =>
    new AppError(
      ErrorCode.CONFLICT,
      `A reindex of model ${j.modelId} is already queued or running${id ? ` (job ${id})` : ''}; cancel it or wait for it to finish`,
      {
        model: j.modelId,
        ...(id ? { job: id } : {}),
      },
    );
  if (open) throw conflict(String(open.id));
  try {
    const row = await db
      .insertInto('reindex_jobs')
      .values({ model_id: j.modelId, only_missing: j.onlyMissing, activate: j.activate })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toJob(row);
  } catch (err) {
    if (isUniqueViolation(err)) throw conflict();
    throw err;
  }
}

export async function setQueueJobId(db: Db, id: string, queueJobId: string): Promise<void> {
  await db.updateTable('reindex_jobs').set({ queue_job_id: queueJobId }).where('id', '=', id).execute();
}

export async function getReindexJob(db: Db, id: string): Promise<ReindexJob | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const r = await db.selectFrom('reindex_jobs').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toJob(r) : null;
}

export async function listReindexJobs(
  db: Db,
  opts: { state?: ReindexState | null; model?: string | null; limit: number },
): Promise<ReindexJob[]> {
  let q = db.selectFrom('reindex_jobs').selectAll().orderBy('id', 'desc').limit(opts.limit);
  if (opts.state) q = q.where('state', '=', opts.state);
  if (opts.model) q = q.where('model_id', '=', opts.model);
  return (await q.execute()).map(toJob);
}

export async function openJobForModel(db: Db, modelId: string): Promise<ReindexJob | null> {
  const r = await db
    .selectFrom('reindex_jobs')
    .selectAll()
    .where('model_id', '=', modelId)
    .where('state', 'in', OPEN_STATES)
    .executeTakeFirst();
  return r ? toJob(r) : null;
}

/**
 * Takes the job for a worker: queued, or running but held by nobody, by this worker, or by a worker
 * whose heartbeat is older than the lease. Null when it is finished, cancelled, or held by a live worker.
 */
export async function claimReindexJob(db: Db, id: string, workerId: string, leaseSeconds: number): Promise<ReindexJob | null> {
  const r = await db
    .updateTable('reindex_jobs')
    .set({
      state: 'running',
      worker_id: workerId,
      heartbeat_at: sql<Date>`now()`,
      attempts: sql<number>`attempts + 1`,
      started_at: sql<Date>`coalesce(started_at, now())`,
      run_started_at: sql<Date>`now()`,
      run_processed: sql<number>`processed`,
      error: null,
    })
    .where('id', '=', id)
    .where('state', 'in', OPEN_STATES)
    .where((eb) =>
      eb.or([
        eb('worker_id', 'is', null),
        eb('worker_id', '=', workerId),
        eb('heartbeat_at', '<', sql<Date>`now() - make_interval(secs => ${leaseSeconds})`),
      ]),
    )
    .returningAll()
    .executeTakeFirst();
  return r ? toJob(r) : null;
}

/** Heartbeat of the holding worker; false when the job is no longer running under it (cancelled, taken over). */
export async function heartbeat(db: Db, id: string, workerId: string): Promise<boolean> {
  const r = await db
    .updateTable('reindex_jobs')
    .set({ heartbeat_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('worker_id', '=', workerId)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Running jobs whose worker stopped beating (crashed, killed): they are handed back to the queue. */
export async function orphanedJobs(db: Db, leaseSeconds: number, exceptWorker: string): Promise<ReindexJob[]> {
  const rows = await db
    .selectFrom('reindex_jobs')
    .selectAll()
    .where('state', '=', 'running')
    .where((eb) =>
      eb.or([
        eb('worker_id', 'is', null),
        eb.and([eb('worker_id', '!=', exceptWorker), eb('heartbeat_at', '<', sql<Date>`now() - make_interval(secs => ${leaseSeconds})`)]),
      ]),
    )
    .execute();
  return rows.map(toJob);
}

/** Ends an open job; returns the job as it was (null if it was no longer open). */
export async function cancelJob(db: Db, id: string): Promise<ReindexJob | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const r = await db
    .updateTable('reindex_jobs')
    .set({ state: 'cancelled', finished_at: sql<Date>`now()`, worker_id: null })
    .where('id', '=', id)
    .where('state', 'in', OPEN_STATES)
    .returningAll()
    .executeTakeFirst();
  return r ? toJob(r) : null;
}

/** Ends the job held by this worker. False when it was no longer this worker's running job. */
export async function finishJob(
  db: Db,
  id: string,
  workerId: string,
  end: { state: 'succeeded' | 'failed'; error?: string | null; activated?: boolean },
): Promise<boolean> {
  const r = await db
    .updateTable('reindex_jobs')
    .set({
      state: end.state,
      error: end.error ?? null,
      activated: end.activated ?? false,
      finished_at: sql<Date>`now()`,
      worker_id: null,
      heartbeat_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .where('worker_id', '=', workerId)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Fails an open job regardless of who holds it (attempts exhausted, model gone). */
export async function failOpenJob(db: Db, id: string, error: string): Promise<void> {
  await db
    .updateTable('reindex_jobs')
    .set({ state: 'failed', error, finished_at: sql<Date>`now()`, worker_id: null })
    .where('id', '=', id)
    .where('state', 'in', OPEN_STATES)
    .execute();
}

export interface CatalogImage {
  productId: string;
  sku: string;
  sha256: string;
  original: Buffer;
}

/** Products whose current image is not embedded by the model (NOT EXISTS over the (product, model) key). */
const missingVector = (modelId: string) =>
  sql<boolean>`NOT EXISTS (SELECT 1 FROM product_embeddings e WHERE e.product_id = pi.product_id AND e.model_id = ${modelId} AND e.image_sha256 = pi.sha256)`;

/** The next keyset batch of product images after `afterId`, in id order. */
export async function nextCatalogBatch(
  db: Db,
  o: { modelId: string; afterId: string; limit: number; onlyMissing: boolean },
): Promise<CatalogImage[]> {
  const rows = await sql<{ product_id: string; sku: string; sha256: string; original: Buffer }>`
    SELECT pi.product_id, p.sku, pi.sha256, pi.original
    FROM product_images pi JOIN products p ON p.id = pi.product_id
    WHERE pi.product_id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}
    ORDER BY pi.product_id
    LIMIT ${o.limit}`.execute(db);
  return rows.rows.map((r) => ({ productId: String(r.product_id), sku: r.sku, sha256: r.sha256, original: Buffer.from(r.original) }));
}

/** Products left after the cursor: with an image, and (onlyMissing) without a current vector of the model. */
export async function countLeft(db: Db, o: { modelId: string; afterId: string; onlyMissing: boolean }): Promise<number> {
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM product_images pi
    WHERE pi.product_id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}`.execute(db);
  return Number(r.rows[0]!.n);
}

/** Back to queued (after an error the queue retries, or a graceful stop): held by nobody. */
export async function requeueJob(db: Db, id: string, workerId: string | null, error: string | null): Promise<boolean> {
  const r = await db
    .updateTable('reindex_jobs')
    .set({ state: 'queued', worker_id: null, error })
    .where('id', '=', id)
    .where('state', 'in', OPEN_STATES)
    .where((eb) => (workerId === null ? eb('worker_id', 'is', null) : eb('worker_id', '=', workerId)))
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Products with an image but no vector of that image for the model. */
export async function countMissing(db: Db, modelId: string): Promise<number> {
  const r = await sql<{ n: string }>`SELECT count(*) AS n FROM product_images pi WHERE ${missingVector(modelId)}`.execute(db);
  return Number(r.rows[0]!.n);
}

export async function countProductsWithImages(db: Db): Promise<number> {
  const r = await sql<{ n: string }>`SELECT count(*) AS n FROM product_images`.execute(db);
  return Number(r.rows[0]!.n);
}

export class LostJobError extends Error {
  override name = 'LostJobError';
}

/**
 * One batch, atomically: the job row (fenced on worker and state) and the vectors. A vector is written
 * only if the product still has the image it was computed from (a concurrent upsert that changed the
 * image wrote its own vector already, or the final sweep picks the product up). Multi-row insert via unnest.
 */
export async function commitBatch(
  trx: Transaction<DB>,
  b: {
    jobId: string;
    workerId: string;
    modelId: string;
    cursor: string;
    processed: number;
    failed: number;
    errors: ReindexError[];
    total?: number;
    vectors: Array<{ productId: string; sha256: string; embedding: Float32Array }>;
  },
): Promise<void> {
  const updated = await trx
    .updateTable('reindex_jobs')
    .set({
      cursor: b.cursor,
      processed: sql<number>`processed + ${b.processed}`,
      failed: sql<number>`failed + ${b.failed}`,
      errors: b.errors.length
        ? sql<never>`(SELECT coalesce(jsonb_agg(x.e ORDER BY x.n), '[]'::jsonb) FROM (SELECT e, n FROM jsonb_array_elements(errors || ${JSON.stringify(b.errors)}::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n LIMIT ${MAX_RECORDED_ERRORS}) x)`
        : sql<never>`errors`,
      heartbeat_at: sql<Date>`now()`,
      ...(b.total !== undefined
        ? { total: sql<number>`greatest(${b.total}, processed + ${b.processed})` }
        : { total: sql<number>`greatest(total, processed + ${b.processed})` }),
    })
    .where('id', '=', b.jobId)
    .where('worker_id', '=', b.workerId)
    .where('state', '=', 'running')
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== 1) throw new LostJobError(`job ${b.jobId} is no longer running under this worker`);
  if (b.vectors.length === 0) return;
  await sql`
    INSERT INTO product_embeddings (product_id, model_id, embedding, image_sha256)
    SELECT v.product_id, ${b.modelId}, v.embedding::halfvec, v.sha256
    FROM unnest(${b.vectors.map((v) => v.productId)}::bigint[], ${b.vectors.map((v) => v.sha256)}::text[], ${b.vectors.map((v) => vectorLiteral(v.embedding))}::text[])
      AS v(product_id, sha256, embedding)
    JOIN product_images pi ON pi.product_id = v.product_id AND pi.sha256 = v.sha256
    ON CONFLICT (product_id, model_id) DO UPDATE
      SET embedding = excluded.embedding, image_sha256 = excluded.image_sha256, created_at = now()`.execute(trx);
}

export async function setTotal(db: Db, id: string, total: number): Promise<void> {
  await db
    .updateTable('reindex_jobs')
    .set({ total: sql<number>`greatest(${total}, processed)` })
    .where('id', '=', id)
    .execute();
}

/** Starts another pass over the catalog (sweep for products still missing a vector). */
export async function startSweep(db: Db, jobId: string, workerId: string): Promise<void> {
  const r = await db
    .updateTable('reindex_jobs')
    .set({ cursor: 0, pass: sql<number>`pass + 1`, heartbeat_at: sql<Date>`now()` })
    .where('id', '=', jobId)
    .where('worker_id', '=', workerId)
    .where('state', '=', 'running')
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) throw new LostJobError(`job ${jobId} is no longer running under this worker`);
}

/** 'valid', 'invalid' (a failed concurrent build left it) or 'missing'. */
export async function modelIndexState(db: Db, modelId: string): Promise<'valid' | 'invalid' | 'missing'> {
  const r = await sql<{ valid: boolean }>`
    SELECT i.indisvalid AS valid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
    WHERE c.relname = ${modelIndexName(modelId)} AND c.relkind = 'i'`.execute(db);
  if (r.rows.length === 0) return 'missing';
  return r.rows[0]!.valid ? 'valid' : 'invalid';
}

/**
 * Builds the model's HNSW index after the bulk load, the same definition as ensureModelIndex.
 * On PostgreSQL CONCURRENTLY, so upserts keep writing vectors meanwhile; PGlite is one session anyway.
 */
export async function buildModelIndex(db: Kysely<DB>, model: { id: string; dimension: number }, concurrently: boolean): Promise<void> {
  const name = sql.id(modelIndexName(model.id));
  const state = await modelIndexState(db, model.id);
  if (state === 'valid') return;
  const conc = concurrently ? sql`CONCURRENTLY` : sql``;
  if (state === 'invalid') await sql`DROP INDEX ${conc} IF EXISTS ${name}`.execute(db);
  await db.connection().execute(async (c) => {
    if (concurrently) await sql`SET maintenance_work_mem = '512MB'`.execute(c);
    // An index build is a job, not a request: it may outlast the request-path statement_timeout.
    if (concurrently) await sql`SET statement_timeout = 0`.execute(c);
    try {
      await sql`
        CREATE INDEX ${conc} IF NOT EXISTS ${name} ON product_embeddings
        USING hnsw ((embedding::halfvec(${sql.raw(String(model.dimension))})) halfvec_cosine_ops)
        WITH (m = 16, ef_construction = 64)
        WHERE model_id = ${sql.lit(model.id)}`.execute(c);
    } finally {
      if (concurrently) await sql`RESET maintenance_work_mem`.execute(c);
      if (concurrently) await sql`RESET statement_timeout`.execute(c);
    }
  });
}

export async function countModelVectors(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom('product_embeddings')
    .select(['model_id', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('model_id')
    .execute();
  return new Map(rows.map((r) => [r.model_id, Number(r.n)]));
}

/**
 * Makes the model the active one in one transaction, only if every product with an image has a vector of
 * that image for it and its index is valid. Writers of vectors are held off (SHARE lock) between the
 * check and the switch, so no product can slip in unembedded. The previous active model is retired
 * (its vectors stay until dropModelEmbeddings). Returns the number of products missing a vector (0: switched).
 */
export async function switchActiveModel(
  trx: Transaction<DB>,
  modelId: string,
): Promise<{ missing: number; index: 'valid' | 'invalid' | 'missing' }> {
  await sql`LOCK TABLE product_embeddings IN SHARE MODE`.execute(trx);
  const index = await modelIndexState(trx, modelId);
  const missing = await countMissing(trx, modelId);
  if (missing > 0 || index !== 'valid') return { missing, index };
  await trx
    .updateTable('embedding_models')
    .set({ is_active: false, status: 'retired' })
    .where('is_active', '=', true)
    .where('id', '!=', modelId)
    .execute();
  await trx
    .updateTable('embedding_models')
    .set({ is_active: true, status: 'ready', activated_at: sql<Date>`now()` })
    .where('id', '=', modelId)
    .where('is_active', '=', false)
    .execute();
  return { missing: 0, index };
}

/** Deletes every vector of a model (and, separately, its index: dropModelIndex). Returns how many. */
export async function deleteModelEmbeddings(db: Db, modelId: string): Promise<number> {
  const r = await db.deleteFrom('product_embeddings').where('model_id', '=', modelId).executeTakeFirst();
  return Number(r.numDeletedRows);
}
