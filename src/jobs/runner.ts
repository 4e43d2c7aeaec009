/**
 * The job runner: pg-boss started over the service's database, one queue per embedding model
 * ("reindex-<hash of the model id>"), and a worker on the queue of every model this process has loaded,
 * so a job is only ever fetched by a process that can compute its vectors.
 *
 * pg-boss gives dispatch (SKIP LOCKED fetch), delays, retries with backoff, expiry and archiving;
 * reindex_jobs holds what pg-boss does not: progress, the keyset cursor, per-product errors, and a lease
 * (worker id + heartbeat) that fences every batch commit. A job whose worker died (SIGKILL, power) is
 * handed back to the queue once its heartbeat is older than the lease, or at once when the process owns
 * the database exclusively (the embedded PGlite: nobody else can hold the job).
 */
import type { ImageLimits } from '../images/decode.js';
import { createHash, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { ModelRuntime } from '../catalog/model-runtime.js';
import type { Database } from '../db/connect.js';
import { getActiveModel, getModel, setModelStatus, type EmbeddingModel } from '../db/models.js';
import {
  cancelJob,
  claimReindexJob,
  failOpenJob,
  getReindexJob,
  heartbeat,
  insertReindexJob,
  listReindexJobs,
  LostJobError,
  orphanedJobs,
  requeueJob,
  setQueueJobId,
  type ReindexJob,
} from '../db/reindex.js';
import type { DB } from '../db/types.js';
import type { Embedder } from '../embedding/index.js';
import type { Logger } from '../log.js';
import { bossTrx, createBoss, type PgBoss } from './boss.js';
import { runReindex, StopRequested } from './reindex.js';

export interface JobRunnerOptions {
  batchSize: number;
  throttleMs: number;
  leaseSeconds: number;
  pollIntervalMs: number;
  /** Fetch and run jobs here (false: enqueue only, e.g. a process without models). */
  work: boolean;
  /** See ReindexContext.deferIndex. */
  deferIndex?: boolean;
  /** Decode limits for reindexing stored originals (the configured image limits). */
  imageLimits?: ImageLimits;
  /** Loads a model this process does not have yet (from the model cache); null when it cannot. */
  loadModel?: (ref: string) => Promise<{ embedder: Embedder; source: string; variant: string | null } | null>;
}

interface ReindexPayload {
  jobId: string;
}

const RETRY_LIMIT = 5;

export function queueName(modelId: string): string {
  return `reindex-${createHash('sha256').update(modelId).digest('hex').slice(0, 24)}`;
}

export class JobRunner {
  readonly workerId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  private boss: PgBoss | null = null;
  private readonly watched = new Set<string>();
  private readonly queues = new Set<string>();
  private recoverTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly running = new Set<Promise<unknown>>();
  private readonly db: Kysely<DB>;

  constructor(
    private readonly database: Database,
    private readonly models: ModelRuntime,
    private readonly log: Logger,
    private readonly opts: JobRunnerOptions,
  ) {
    this.db = database.db;
  }

  async start(): Promise<void> {
    const boss = createBoss(this.database, { pollIntervalMs: this.opts.pollIntervalMs });
    boss.on('error', (err) => this.log.error({ err }, 'job queue error'));
    await boss.start();
    this.boss = boss;
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
            .catch((err) => this.log.error({ err }, 'reindex recovery failed')),
        every,
      );
      this.recoverTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.recoverTimer) clearInterval(this.recoverTimer);
    await Promise.allSettled([...this.running]);
    await this.boss?.stop({ graceful: true, wait: true, timeout: 5000, close: false });
    this.boss = null;
  }

  private requireBoss(): PgBoss {
    if (!this.boss) throw new AppError(ErrorCode.CONFLICT, 'The job queue is not running in this process');
    return this.boss;
  }

  private async ensureQueue(modelId: string): Promise<string> {
    const name = queueName(modelId);
    if (!this.queues.has(name)) {
      await this.requireBoss().createQueue(name, {
        name,
        retryLimit: RETRY_LIMIT,
        retryDelay: 5,
        retryBackoff: true,
        expireInSeconds: 23 * 3600,
      } as never);
      this.queues.add(name);
    }
    return name;
  }

  /** Starts a worker on a model's queue (a model loaded in this process). */
  async watch(modelId: string): Promise<void> {
    if (!this.opts.work || this.watched.has(modelId)) return;
    const name = await this.ensureQueue(modelId);
    this.watched.add(modelId);
    await this.requireBoss().work<ReindexPayload>(
      name,
      { pollingIntervalSeconds: Math.max(0.5, this.opts.pollIntervalMs / 1000), batchSize: 1, includeMetadata: true },
      async ([job]) => {
        if (!job) return;
        const p = this.handle(job.data.jobId, job.retryCount, job.retryLimit);
        this.running.add(p);
        try {
          await p;
        } finally {
          this.running.delete(p);
        }
      },
    );
  }

  /** Resolves a model reference to a registered, loaded model (loading it from the cache if need be). */
  async resolveModel(ref: string | null | undefined): Promise<{ model: EmbeddingModel; embedder: Embedder }> {
    let id = ref?.trim() || null;
    if (!id) {
      const active = await getActiveModel(this.db);
      if (!active) throw new AppError(ErrorCode.BAD_USER_INPUT, 'No model given and no model is active', { field: 'model' });
      id = active.id;
    }
    let embedder = this.models.embedder(id);
    if (!embedder && this.opts.loadModel) {
      const loaded = await this.opts.loadModel(id).catch((err: unknown) => {
        throw new AppError(
          ErrorCode.MODEL_UNAVAILABLE,
          `Model ${id} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
          { model: id },
        );
      });
      if (loaded) {
        const loadedId = loaded.embedder.info().modelId;
        if (loadedId !== id) {
          await loaded.embedder.close();
          throw new AppError(ErrorCode.CONFLICT, `The files found for ${id} are model ${loadedId}`, { model: id });
        }
        try {
          await this.models.add(loaded.embedder, loaded.source, loaded.variant);
        } catch (err) {
          await loaded.embedder.close();
          throw err; // e.g. CONFLICT: registered with another dimension
        }
        embedder = loaded.embedder;
      }
    }
    const model = await getModel(this.db, id);
    if (!embedder) {
      throw model
        ? new AppError(
            ErrorCode.MODEL_UNAVAILABLE,
            `Model ${id} is registered but its files are not loaded in this process (fetch it: vps model fetch ${id})`,
            { model: id },
          )
        : new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}: not loaded, not registered, not in the model cache`, {
            field: 'model',
            model: id,
          });
    }
    if (!model) throw new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}`, { field: 'model', model: id });
    const dimension = embedder.info().dimension;
    if (dimension !== model.dimension) {
      throw new AppError(
        ErrorCode.CONFLICT,
        `Model ${id} is registered with dimension ${model.dimension}, but its loaded files produce ${dimension}`,
        { model: id },
      );
    }
    return { model, embedder };
  }

  /** Enqueues a reindex and returns at once; the job row and the queue entry commit together. */
  async enqueueReindex(args: { model?: string | null; onlyMissing?: boolean | null; activate?: boolean | null }): Promise<ReindexJob> {
    const { model } = await this.resolveModel(args.model);
    await this.watch(model.id);
    const name = await this.ensureQueue(model.id);
    const boss = this.requireBoss();
    const job = await this.db.transaction().execute(async (trx) => {
      const row = await insertReindexJob(trx, {
        modelId: model.id,
        onlyMissing: args.onlyMissing ?? false,
        activate: args.activate ?? true,
      });
      if (!model.isActive) await setModelStatus(trx, model.id, 'building');
      const queueId = await boss.send(name, { jobId: row.id } satisfies ReindexPayload, { db: bossTrx(trx) } as never);
      if (!queueId) throw new Error('the queue refused the job');
      await setQueueJobId(trx, row.id, queueId);
      return { ...row, queueJobId: queueId };
    });
    this.log.info({ job: job.id, model: model.id, onlyMissing: job.onlyMissing }, 'reindex queued');
    return job;
  }

  async cancel(id: string): Promise<ReindexJob> {
    const before = await getReindexJob(this.db, id);
    if (!before) throw new AppError(ErrorCode.NOT_FOUND, `No reindex job ${id}`, { field: 'id' });
    const cancelled = await cancelJob(this.db, id);
    if (!cancelled) throw new AppError(ErrorCode.CONFLICT, `Reindex job ${id} has already ${before.state}`, { state: before.state });
    if (cancelled.queueJobId && this.boss) await this.boss.cancel(queueName(cancelled.modelId), cancelled.queueJobId).catch(() => {});
    const model = await getModel(this.db, cancelled.modelId);
    if (model && !model.isActive && model.status === 'building') await setModelStatus(this.db, model.id, 'ready');
    this.log.info({ job: id, model: cancelled.modelId }, 'reindex cancelled');
    return (await getReindexJob(this.db, id))!;
  }

  /** Sends a fresh queue entry for an open job (orphan recovery, graceful stop), atomically with its row. */
  private async requeue(job: ReindexJob, fromWorker: string | null, error: string | null, startAfterSeconds = 0): Promise<boolean> {
    const boss = this.requireBoss();
    const name = await this.ensureQueue(job.modelId);
    return this.db.transaction().execute(async (trx) => {
      if (!(await requeueJob(trx, job.id, fromWorker, error))) return false;
      if (job.queueJobId) await boss.cancel(name, job.queueJobId, { db: bossTrx(trx) } as never).catch(() => {});
      const queueId = await boss.send(name, { jobId: job.id } satisfies ReindexPayload, {
        db: bossTrx(trx),
        startAfter: startAfterSeconds,
      } as never);
      if (queueId) await setQueueJobId(trx, job.id, queueId);
      return true;
    });
  }

  /**
   * Open jobs of models this process has not loaded (a restart after the model was loaded on demand):
   * loads them from the model cache if they are there, and starts working their queues.
   */
  async adoptOpenJobs(): Promise<void> {
    if (!this.boss || this.stopping || !this.opts.work) return;
    const open = await listReindexJobs(this.db, { state: null, limit: 200 });
    const models = new Set(open.filter((j) => j.state === 'queued' || j.state === 'running').map((j) => j.modelId));
    for (const id of models) {
      if (this.watched.has(id)) continue;
      try {
        await this.resolveModel(id);
        await this.watch(id);
        this.log.info({ model: id }, 'loaded a model with open reindex jobs');
      } catch (err) {
        this.log.debug({ err, model: id }, 'cannot work this model’s reindex jobs here');
      }
    }
  }

  /** Hands jobs of dead workers back to the queue. */
  async recover(exclusive: boolean): Promise<number> {
    if (!this.boss || this.stopping) return 0;
    const lease = exclusive ? 0 : this.opts.leaseSeconds;
    let n = 0;
    for (const job of await orphanedJobs(this.db, lease, this.workerId)) {
      if (!exclusive && job.workerId !== null && job.heartbeatAt && Date.now() - job.heartbeatAt.getTime() < lease * 1000) continue;
      if (await this.requeue(job, job.workerId, null)) {
        n++;
        this.log.warn(
          { job: job.id, model: job.modelId, deadWorker: job.workerId, cursor: job.cursor },
          'reindex: resuming a job whose worker stopped',
        );
      }
    }
    return n;
  }

  private async handle(jobId: string, retryCount: number, retryLimit: number): Promise<void> {
    const claimed = await claimReindexJob(this.db, jobId, this.workerId, this.opts.leaseSeconds);
    if (!claimed) return; // finished, cancelled, or held by a live worker
    const log = this.log.child({ job: jobId, model: claimed.modelId });
    let lost = false;
    const beat = setInterval(
      () => {
        heartbeat(this.db, jobId, this.workerId).then(
          (ok) => {
            if (!ok) lost = true;
          },
          (err) => log.warn({ err }, 'reindex heartbeat failed'),
        );
      },
      Math.max(250, (this.opts.leaseSeconds * 1000) / 3),
    );
    try {
      const embedder = this.models.embedder(claimed.modelId);
      if (!embedder) throw new Error(`model ${claimed.modelId} is not loaded in this worker`);
      log.info(
        { cursor: claimed.cursor, processed: claimed.processed, attempt: claimed.attempts },
        claimed.attempts > 1 ? 'reindex resumed' : 'reindex started',
      );
      const { activated } = await runReindex(
        {
          db: this.db,
          log,
          workerId: this.workerId,
          batchSize: this.opts.batchSize,
          throttleMs: this.opts.throttleMs,
          concurrentIndex: this.database.kind === 'postgres',
          ...(this.opts.deferIndex !== undefined ? { deferIndex: this.opts.deferIndex } : {}),
          ...(this.opts.imageLimits ? { imageLimits: this.opts.imageLimits } : {}),
          stopping: () => this.stopping,
          lost: () => lost,
        },
        claimed,
        embedder,
      );
      log.info({ activated }, 'reindex finished');
    } catch (err) {
      if (err instanceof LostJobError) {
        log.info('reindex stopped: the job was cancelled or taken over');
        return;
      }
      if (err instanceof StopRequested) {
        await this.requeue(claimed, this.workerId, null, 1);
        log.info('reindex paused for shutdown; it resumes on the next start');
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      if (retryCount >= retryLimit) {
        await failOpenJob(this.db, jobId, message);
        log.error({ err }, 'reindex failed');
      } else {
        await requeueJob(this.db, jobId, this.workerId, message);
        log.warn({ err, retry: retryCount + 1 }, 'reindex attempt failed; the queue retries it');
      }
      throw err;
    } finally {
      clearInterval(beat);
    }
  }
}
