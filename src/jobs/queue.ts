/**
 * The reindex queue on pg-boss: one queue per embedding model ("reindex-<hash of the model id>"), so a
 * job is only ever fetched by a process that has the model loaded. pg-boss gives dispatch (SKIP LOCKED
 * fetch), delays, expiry and archiving; what a job is and how far it got is reindex_jobs' (db/reindex-jobs.ts).
 */
import { createHash } from 'node:crypto';
import type { Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { Database } from '../db/connect.js';
import type { DB } from '../db/types.js';
import { bossTrx, createBoss, type PgBoss } from './boss.js';
import { RETRY_DELAY_SECONDS } from './retry-policy.js';

export interface ReindexPayload {
  jobId: string;
}

export function queueName(modelId: string): string {
  return `reindex-${createHash('sha256').update(modelId).digest('hex').slice(0, 24)}`;
}

export class ReindexQueue {
  private boss: PgBoss | null = null;
  private readonly queues = new Set<string>();

  constructor(
    private readonly database: Database,
    private readonly opts: {
      pollIntervalMs: number;
      maxAttempts: number;
      onError: (err: unknown) => void;
      /** A background queue call failed because the database is unreachable (see absorbDatabaseFaultRejections). */
      onFault?: (err: unknown) => void;
    },
  ) {}

  async start(): Promise<void> {
    const boss = createBoss(this.database, { pollIntervalMs: this.opts.pollIntervalMs, onFault: this.opts.onFault ?? this.opts.onError });
    boss.on('error', this.opts.onError);
    await boss.start();
    this.boss = boss;
  }

  get started(): boolean {
    return this.boss !== null;
  }

  async stop(): Promise<void> {
    await this.boss?.stop({ graceful: true, wait: true, timeout: 5000, close: false });
    this.boss = null;
  }

  private requireBoss(): PgBoss {
    if (!this.boss) throw new AppError(ErrorCode.CONFLICT, 'The job queue is not running in this process');
    return this.boss;
  }

  /**
   * Creates the model's queue if this process has not yet. Call it before opening a transaction that
   * sends or cancels: creating a queue runs on the database itself, which on PGlite (one session) would
   * wait for that transaction forever.
   */
  async ensure(modelId: string): Promise<string> {
    const name = queueName(modelId);
    if (!this.queues.has(name)) {
      await this.requireBoss().createQueue(name, {
        name,
        retryLimit: this.opts.maxAttempts,
        retryDelay: RETRY_DELAY_SECONDS,
        retryBackoff: true,
        expireInSeconds: 23 * 3600,
      });
      this.queues.add(name);
    }
    return name;
  }

  /** Runs `handle` for each job of the model's queue, one at a time. */
  async work(modelId: string, handle: (jobId: string) => Promise<void>): Promise<void> {
    const name = await this.ensure(modelId);
    await this.requireBoss().work<ReindexPayload>(
      name,
      { pollingIntervalSeconds: Math.max(0.5, this.opts.pollIntervalMs / 1000), batchSize: 1 },
      async ([job]) => {
        if (job) await handle(job.data.jobId);
      },
    );
  }

  /** Enqueues inside the caller's transaction (after ensure), so the job row and its queue entry commit together. */
  async send(trx: Transaction<DB>, modelId: string, jobId: string, startAfterSeconds = 0): Promise<string> {
    const queueId = await this.requireBoss().send(queueName(modelId), { jobId } satisfies ReindexPayload, {
      db: bossTrx(trx),
      startAfter: startAfterSeconds,
    });
    if (!queueId) throw new Error('the queue refused the job');
    return queueId;
  }

  /** Withdraws a queue entry (best effort: it may have completed or been archived). */
  async cancel(modelId: string, queueJobId: string, trx?: Transaction<DB>): Promise<void> {
    if (!this.boss) return;
    await this.boss.cancel(queueName(modelId), queueJobId, trx ? { db: bossTrx(trx) } : {}).catch(() => {});
  }
}
