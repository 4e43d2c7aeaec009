/**
 * Leases: a running job's worker beats its heartbeat every lease/3 seconds; a job whose worker stopped
 * beating (SIGKILL, power) is orphaned once the heartbeat is older than the lease, or at once when the
 * process owns the database exclusively (the embedded PGlite: nobody else can hold the job). Orphans go
 * back to the queue, unless they have used up their attempts: then they end FAILED (retry-policy.ts).
 */
import type { Kysely } from 'kysely';
import { failOpenJob, heartbeat, orphanedJobs, type ReindexJob } from '../db/reindex-jobs.js';
import type { DB } from '../db/types.js';
import type { Logger } from '../log.js';
import { markBuildEnded } from '../models/lifecycle.js';
import { attemptsExhausted, exhaustedReason, type RetryPolicy } from './retry-policy.js';

/** Beats the job's heartbeat until stopped; lost() turns true once the job is no longer this worker's. */
export function startHeartbeat(
  db: Kysely<DB>,
  job: { id: string; workerId: string; leaseSeconds: number },
  log: Logger,
): { lost(): boolean; stop(): void } {
  let lost = false;
  const timer = setInterval(
    () => {
      heartbeat(db, job.id, job.workerId).then(
        (ok) => {
          if (!ok) lost = true;
        },
        (err: unknown) => log.warn({ err }, 'reindex heartbeat failed'),
      );
    },
    Math.max(250, (job.leaseSeconds * 1000) / 3),
  );
  return { lost: () => lost, stop: () => clearInterval(timer) };
}

/** Ends a job that may not run again; true when it was still open. */
export async function giveUp(db: Kysely<DB>, policy: RetryPolicy, job: ReindexJob, log: Logger): Promise<void> {
  const reason = exhaustedReason(policy, job.attempts, job.error);
  await failOpenJob(db, job.id, reason);
  if (job.kind === 'reindex') await markBuildEnded(db, job.modelId);
  log.error({ job: job.id, model: job.modelId, attempts: job.attempts }, `reindex failed: ${reason}`);
}

/**
 * Orphaned jobs of dead workers: each is handed to `requeue` (back on the queue), or failed when its
 * attempts are used up. Returns how many were requeued.
 */
export async function recoverOrphans(
  db: Kysely<DB>,
  o: {
    leaseSeconds: number;
    exclusive: boolean;
    workerId: string;
    /** The jobs this worker is running now (its other stale jobs are orphans: orphanedJobs). */
    runningHere: readonly string[];
    policy: RetryPolicy;
    log: Logger;
  },
  requeue: (job: ReindexJob) => Promise<boolean>,
): Promise<number> {
  const lease = o.exclusive ? 0 : o.leaseSeconds;
  let n = 0;
  for (const job of await orphanedJobs(db, lease, o.workerId, o.runningHere)) {
    if (!o.exclusive && job.workerId !== null && job.heartbeatAt && Date.now() - job.heartbeatAt.getTime() < lease * 1000) continue;
    if (attemptsExhausted(o.policy, job.attempts)) {
      await giveUp(db, o.policy, job, o.log);
      continue;
    }
    if (await requeue(job)) {
      n++;
      o.log.warn(
        { job: job.id, model: job.modelId, deadWorker: job.workerId, cursor: job.cursor, attempts: job.attempts },
        'reindex: resuming a job whose worker stopped',
      );
    }
  }
  return n;
}
