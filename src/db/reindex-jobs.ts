/**
 * reindex_jobs: the durable catalog jobs, a reindex (kind 'reindex') or a tagging run (kind 'tag', with its
 * taxonomy; migration 0011): a job's row, its lease (worker id + heartbeat) and its progress. Every write by a worker
 * is fenced on worker_id and state = 'running', so a cancelled or taken-over job stops at its next write.
 */
import { sql, type Insertable, type Selectable } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { Db, ReindexJobsTable, TagTaxonomy } from './types.js';

export type ReindexState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const OPEN_STATES: ReindexState[] = ['queued', 'running'];
export const MAX_RECORDED_ERRORS = 100;

export interface ReindexError {
  productId: string;
  sku: string | null;
  message: string;
}

export type JobKind = 'reindex' | 'tag';

export interface ReindexJob {
  id: string;
  kind: JobKind;
  /** A tagging run's taxonomy; null for a reindex. */
  taxonomy: TagTaxonomy | null;
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
    kind: r.kind,
    taxonomy: r.taxonomy,
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

/**
 * Inserts a queued job. The check for an open one comes first (its error names that job); the partial
 * unique index decides a race between two inserts, answered with the same CONFLICT.
 */
async function insertJob(db: Db, values: Insertable<ReindexJobsTable>, conflict: () => AppError): Promise<ReindexJob> {
  try {
    return toJob(await db.insertInto('reindex_jobs').values(values).returningAll().executeTakeFirstOrThrow());
  } catch (err) {
    if (isUniqueViolation(err)) throw conflict();
    throw err;
  }
}

/** A new queued job; CONFLICT when the model already has a queued or running one. */
export async function insertReindexJob(db: Db, j: { modelId: string; onlyMissing: boolean; activate: boolean }): Promise<ReindexJob> {
  const open = await db
    .selectFrom('reindex_jobs')
    .select('id')
    .where('model_id', '=', j.modelId)
    .where('kind', '=', 'reindex')
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
  return insertJob(db, { model_id: j.modelId, only_missing: j.onlyMissing, activate: j.activate }, conflict);
}

/** A new queued tagging run; CONFLICT when a run for the same attribute is already queued or running. */
export async function insertTagJob(db: Db, j: { modelId: string; taxonomy: TagTaxonomy }): Promise<ReindexJob> {
  const open = await db
    .selectFrom('reindex_jobs')
    .select('id')
    .where('kind', '=', 'tag')
    .where(sql<string>`taxonomy ->> 'attribute'`, '=', j.taxonomy.attribute)
    .where('state', 'in', OPEN_STATES)
    .executeTakeFirst();
  const conflict = (id?: string) =>
    new AppError(
      ErrorCode.CONFLICT,
      `A tagging run for ${j.taxonomy.attribute} is already queued or running${id ? ` (job ${id})` : ''}; cancel it or wait for it to finish`,
      { attribute: j.taxonomy.attribute, ...(id ? { job: id } : {}) },
    );
  if (open) throw conflict(String(open.id));
  return insertJob(
    db,
    { model_id: j.modelId, kind: 'tag', taxonomy: JSON.stringify(j.taxonomy), only_missing: j.taxonomy.onlyMissing, activate: false },
    conflict,
  );
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
  opts: { state?: ReindexState | null; model?: string | null; limit: number; kind?: JobKind | null },
): Promise<ReindexJob[]> {
  let q = db.selectFrom('reindex_jobs').selectAll().orderBy('id', 'desc').limit(opts.limit);
  if (opts.kind) q = q.where('kind', '=', opts.kind);
  if (opts.state) q = q.where('state', '=', opts.state);
  if (opts.model) q = q.where('model_id', '=', opts.model);
  return (await q.execute()).map(toJob);
}

export async function openJobForModel(db: Db, modelId: string): Promise<ReindexJob | null> {
  const r = await db
    .selectFrom('reindex_jobs')
    .selectAll()
    .where('model_id', '=', modelId)
    .where('kind', '=', 'reindex')
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
export async function orphanedJobs(
  db: Db,
  leaseSeconds: number,
  exceptWorker: string,
  /**
   * The jobs `exceptWorker` is running now. Its other stale jobs are orphans too: a run that ended while
   * the database was down could not hand its job back (seen in CI: a reindex queued across a PostgreSQL
   * restart stayed RUNNING, held by a live worker that no longer ran it). Unset: all of its jobs are its own.
   */
  runningHere?: readonly string[],
): Promise<ReindexJob[]> {
  const rows = await db
    .selectFrom('reindex_jobs')
    .selectAll()
    .where('state', '=', 'running')
    .where((eb) =>
      eb.or([
        eb('worker_id', 'is', null),
        eb.and([
          eb('heartbeat_at', '<', sql<Date>`now() - make_interval(secs => ${leaseSeconds})`),
          runningHere === undefined
            ? eb('worker_id', '!=', exceptWorker)
            : eb.or([
                eb('worker_id', '!=', exceptWorker),
                ...(runningHere.length ? [eb('id', 'not in', [...runningHere])] : [eb.lit(true)]),
              ]),
        ]),
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

export class LostJobError extends Error {
  override name = 'LostJobError';
}

/**
 * A batch's progress on the job row, fenced on worker and state (LostJobError otherwise). The caller
 * commits it in the same transaction as the batch's vectors, so the cursor never runs ahead of them.
 */
export async function advanceJob(
  db: Db,
  b: { jobId: string; workerId: string; cursor: string; processed: number; failed: number; errors: ReindexError[]; total?: number },
): Promise<void> {
  const updated = await db
    .updateTable('reindex_jobs')
    .set({
      cursor: b.cursor,
      processed: sql<number>`processed + ${b.processed}`,
      failed: sql<number>`failed + ${b.failed}`,
      errors: b.errors.length
        ? sql<string>`(SELECT coalesce(jsonb_agg(x.e ORDER BY x.n), '[]'::jsonb) FROM (SELECT e, n FROM jsonb_array_elements(errors || ${JSON.stringify(b.errors)}::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n LIMIT ${MAX_RECORDED_ERRORS}) x)`
        : sql<string>`errors`,
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
