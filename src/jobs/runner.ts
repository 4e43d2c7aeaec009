/**
 * The job runner: the reindex API (enqueue, cancel) and the worker loop. A process works the queue of
 * every model it has loaded (queue.ts); each job it fetches is claimed on its reindex_jobs row, kept alive
 * by a heartbeat and recovered by another process if this one dies (recovery.ts), run (reindex.ts), and
 * retried a bounded number of times (retry-policy.ts).
 */
import { randomUUID } from 'node:crypto';
import type { ImageLimits } from '../images/decode.js';
import { dbErrorFields } from '../db/faults.js';
import type { Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { Database } from '../db/connect.js';
import {
  cancelJob,
  failOpenJob,
  getReindexJob,
  insertReindexJob,
  insertTagJob,
  listReindexJobs,
  LostJobError,
  requeueJob,
  setQueueJobId,
  type ReindexJob,
} from '../db/reindex-jobs.js';
import type { DB } from '../db/types.js';
import type { Logger } from '../log.js';
import { markBuildEnded, markBuilding } from '../models/lifecycle.js';
import type { CategoryIndexPolicy } from '../models/category-indexes.js';
import type { ModelService } from '../models/service.js';
import { ReindexQueue } from './queue.js';
import { giveUp, recoverOrphans, startHeartbeat } from './recovery.js';
import { claimJob, runReindex, StopRequested } from './reindex.js';
import { checkTaxonomy, runTagging } from './tag.js';
import { attemptsExhausted, DEFAULT_MAX_ATTEMPTS, type RetryPolicy } from './retry-policy.js';

export { queueName } from './queue.js';

export interface JobRunnerOptions {
  batchSize: number;
  throttleMs: number;
  leaseSeconds: number;
  pollIntervalMs: number;
  /** Runs a job may start before it ends FAILED (REINDEX_MAX_ATTEMPTS). */
  maxAttempts?: number;
  /** Fetch and run jobs here (false: enqueue only, e.g. a process without models). */
  work: boolean;
  /** See ReindexContext.deferIndex. */
  deferIndex?: boolean;
  /** Decode limits for reindexing stored originals (the configured image limits). */
  imageLimits?: ImageLimits;
  /** See ReindexContext.categoryIndexes. */
  categoryIndexes?: CategoryIndexPolicy;
}

export class JobRunner {
  readonly workerId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  private readonly queue: ReindexQueue;
  private readonly policy: RetryPolicy;
  private readonly watched = new Set<string>();
  private recoverTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly running = new Set<Promise<unknown>>();
  /** The ids of the jobs this process is running now (recovery leaves them alone, whatever their heartbeat). */
  private readonly runningJobs = new Set<string>();
  private readonly db: Kysely<DB>;

  constructor(
    private readonly database: Database,
    private readonly models: ModelService,
    private readonly log: Logger,
    private readonly opts: JobRunnerOptions,
  ) {
    this.db = database.db;
    this.policy = { maxAttempts: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS };
    this.queue = new ReindexQueue(database, {
      pollIntervalMs: opts.pollIntervalMs,
      maxAttempts: this.policy.maxAttempts,
      onError: (err) => this.log.error({ err: dbErrorFields(err) }, 'job queue error'),
      onFault: (err) =>
        this.log.warn({ err: dbErrorFields(err) }, 'job queue call failed while the database was unreachable; the job is fetched again'),
    });
  }

  async start(): Promise<void> {
    await this.queue.start();
    if (this.opts.work) {
      for (const m of this.models.loadedModels()) await this.watch(m.id);
      await this.adoptOpenJobs();
      // The embedded database belongs to this process alone: a running job left in it was orphaned by a
      // crash and is resumed now. On PostgreSQL a job is orphaned when its heartbeat outlives the lease.
      await this.recover(this.database.kind === 'pglite');
      const every = Math.max(1000, (this.opts.leaseSeconds * 1000) / 2);
      this.recoverTimer = setInterval(
        () =>
          void this.recover(false)
            .then(() => this.adoptOpenJobs())
            .catch((err: unknown) => this.log.error({ err }, 'reindex recovery failed')),
        every,
      );
      this.recoverTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.recoverTimer) clearInterval(this.recoverTimer);
    await Promise.allSettled([...this.running]);
    await this.queue.stop();
  }

  /** Starts a worker on a model's queue (a model loaded in this process). */
  async watch(modelId: string): Promise<void> {
    if (!this.opts.work || this.watched.has(modelId)) return;
    this.watched.add(modelId);
    await this.queue.work(modelId, async (jobId) => {
      const p = this.handle(jobId);
      this.running.add(p);
      try {
        await p;
      } finally {
        this.running.delete(p);
      }
    });
  }

  /** Enqueues a reindex and returns at once; the job row and the queue entry commit together. */
  async enqueueReindex(args: { model?: string | null; onlyMissing?: boolean | null; activate?: boolean | null }): Promise<ReindexJob> {
    const { model } = await this.models.resolve(args.model);
    await this.watch(model.id);
    await this.queue.ensure(model.id);
    const job = await this.db.transaction().execute(async (trx) => {
      const row = await insertReindexJob(trx, {
        modelId: model.id,
        onlyMissing: args.onlyMissing ?? false,
        activate: args.activate ?? true,
      });
      await markBuilding(trx, model);
      const queueId = await this.queue.send(trx, model.id, row.id);
      await setQueueJobId(trx, row.id, queueId);
      return { ...row, queueJobId: queueId };
    });
    this.log.info({ job: job.id, model: model.id, onlyMissing: job.onlyMissing }, 'reindex queued');
    return job;
  }

  /**
   * Enqueues a zero-shot tagging run of the catalog (jobs/tag.ts) with a model (default: the active one) and
   * returns at once. The model must be calibrated (its probabilities are what acceptance thresholds).
   */
  async enqueueTagging(args: {
    model?: string | null;
    attribute: string;
    labels: readonly string[];
    template?: string | null;
    onlyMissing?: boolean | null;
  }): Promise<ReindexJob> {
    const taxonomy = checkTaxonomy(args);
    const { model } = await this.models.resolve(args.model);
    const embedder = this.models.embedder(model.id);
    if (embedder && embedder.matchProbability(0) === null)
      throw new AppError(
        ErrorCode.MODEL_UNAVAILABLE,
        `Model ${model.id} has no calibration (logit scale and bias), so no probabilities to suggest with: set EMBEDDING_LOGIT_SCALE and EMBEDDING_LOGIT_BIAS`,
        { model: model.id },
      );
    await this.watch(model.id);
    await this.queue.ensure(model.id);
    const job = await this.db.transaction().execute(async (trx) => {
      const row = await insertTagJob(trx, { modelId: model.id, taxonomy });
      const queueId = await this.queue.send(trx, model.id, row.id);
      await setQueueJobId(trx, row.id, queueId);
      return { ...row, queueJobId: queueId };
    });
    this.log.info({ job: job.id, model: model.id, attribute: taxonomy.attribute, labels: taxonomy.labels.length }, 'tagging queued');
    return job;
  }

  /** Cancels a queued or running job of either kind (what it committed stays: vectors, suggestions). */
  async cancel(id: string): Promise<ReindexJob> {
    const before = await getReindexJob(this.db, id);
    if (!before) throw new AppError(ErrorCode.NOT_FOUND, `No job ${id}`, { field: 'id' });
    const cancelled = await cancelJob(this.db, id);
    if (!cancelled) throw new AppError(ErrorCode.CONFLICT, `Job ${id} has already ${before.state}`, { state: before.state });
    if (cancelled.queueJobId) await this.queue.cancel(cancelled.modelId, cancelled.queueJobId);
    if (cancelled.kind === 'reindex') await markBuildEnded(this.db, cancelled.modelId);
    this.log.info(
      { job: id, model: cancelled.modelId, kind: cancelled.kind },
      `${cancelled.kind === 'tag' ? 'tagging' : 'reindex'} cancelled`,
    );
    return (await getReindexJob(this.db, id))!;
  }

  /** Sends a fresh queue entry for an open job (orphan recovery, graceful stop), atomically with its row. */
  private async requeue(job: ReindexJob, fromWorker: string | null, error: string | null, startAfterSeconds = 0): Promise<boolean> {
    await this.queue.ensure(job.modelId);
    return this.db.transaction().execute(async (trx) => {
      if (!(await requeueJob(trx, job.id, fromWorker, error))) return false;
      if (job.queueJobId) await this.queue.cancel(job.modelId, job.queueJobId, trx);
      await setQueueJobId(trx, job.id, await this.queue.send(trx, job.modelId, job.id, startAfterSeconds));
      return true;
    });
  }

  /**
   * Open jobs of models this process has not loaded (a restart after the model was loaded on demand):
   * loads them from the model cache if they are there, and starts working their queues.
   */
  async adoptOpenJobs(): Promise<void> {
    if (!this.queue.started || this.stopping || !this.opts.work) return;
    const open = await listReindexJobs(this.db, { state: null, limit: 200 });
    const models = new Set(open.filter((j) => j.state === 'queued' || j.state === 'running').map((j) => j.modelId));
    for (const id of models) {
      if (this.watched.has(id)) continue;
      try {
        await this.models.resolve(id);
        await this.watch(id);
        this.log.info({ model: id }, 'loaded a model with open reindex jobs');
      } catch (err) {
        this.log.debug({ err, model: id }, 'cannot work this model’s reindex jobs here');
      }
    }
  }

  /** Hands jobs of dead workers back to the queue (or fails those out of attempts); returns how many were requeued. */
  async recover(exclusive: boolean): Promise<number> {
    if (!this.queue.started || this.stopping) return 0;
    return recoverOrphans(
      this.db,
      {
        leaseSeconds: this.opts.leaseSeconds,
        exclusive,
        workerId: this.workerId,
        runningHere: [...this.runningJobs],
        policy: this.policy,
        log: this.log,
      },
      (job) => this.requeue(job, job.workerId, null),
    );
  }

  /** One run of a job fetched from the queue. */
  private async handle(jobId: string): Promise<void> {
    this.runningJobs.add(jobId);
    try {
      await this.run(jobId);
    } finally {
      this.runningJobs.delete(jobId);
    }
  }

  private async run(jobId: string): Promise<void> {
    const claimed = await claimJob(this.db, jobId, this.workerId, this.opts.leaseSeconds);
    if (!claimed) return; // finished, cancelled, or held by a live worker
    const log = this.log.child({ job: jobId, model: claimed.modelId });
    // A queue entry can outlive the recovery that would have failed the job (pg-boss retries it after its
    // own expiry): the claim is the last place to stop a job out of attempts.
    if (claimed.attempts > this.policy.maxAttempts) {
      await giveUp(this.db, this.policy, { ...claimed, attempts: claimed.attempts - 1 }, log);
      return;
    }
    const beat = startHeartbeat(this.db, { id: jobId, workerId: this.workerId, leaseSeconds: this.opts.leaseSeconds }, log);
    try {
      const embedder = this.models.embedder(claimed.modelId);
      if (!embedder) throw new Error(`model ${claimed.modelId} is not loaded in this worker`);
      log.info(
        { cursor: claimed.cursor, processed: claimed.processed, attempt: claimed.attempts, kind: claimed.kind },
        claimed.attempts > 1 ? `${claimed.kind} resumed` : `${claimed.kind} started`,
      );
      if (claimed.kind === 'tag') {
        await runTagging(
          {
            db: this.db,
            log,
            workerId: this.workerId,
            // REINDEX_BATCH_SIZE: photos per batch for a reindex, products per batch for a tagging run
            batchSize: this.opts.batchSize,
            throttleMs: this.opts.throttleMs,
            stopping: () => this.stopping,
            lost: () => beat.lost(),
          },
          claimed,
          embedder,
        );
        return;
      }
      const { activated } = await runReindex(
        {
          db: this.db,
          kind: this.database.kind,
          log,
          workerId: this.workerId,
          batchSize: this.opts.batchSize,
          throttleMs: this.opts.throttleMs,
          ...(this.opts.deferIndex !== undefined ? { deferIndex: this.opts.deferIndex } : {}),
          ...(this.opts.imageLimits ? { imageLimits: this.opts.imageLimits } : {}),
          ...(this.opts.categoryIndexes ? { categoryIndexes: this.opts.categoryIndexes } : {}),
          stopping: () => this.stopping,
          lost: () => beat.lost(),
        },
        claimed,
        embedder,
      );
      log.info({ activated }, 'reindex finished');
    } catch (err) {
      if (err instanceof LostJobError) {
        log.info(`${claimed.kind} stopped: the job was cancelled or taken over`);
        return;
      }
      if (err instanceof StopRequested) {
        await this.requeue(claimed, this.workerId, null, 1);
        log.info(`${claimed.kind} paused for shutdown; it resumes on the next start`);
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      if (attemptsExhausted(this.policy, claimed.attempts)) {
        await failOpenJob(this.db, jobId, message);
        if (claimed.kind === 'reindex') await markBuildEnded(this.db, claimed.modelId);
        log.error({ err }, `${claimed.kind} failed`);
      } else {
        await requeueJob(this.db, jobId, this.workerId, message);
        log.warn({ err, attempt: claimed.attempts }, `${claimed.kind} attempt failed; the queue retries it`);
      }
      throw err;
    } finally {
      beat.stop();
    }
  }
}
