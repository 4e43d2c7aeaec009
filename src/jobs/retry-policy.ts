/**
 * How often a reindex job is run before it is given up. One counter: reindex_jobs.attempts, taken on each
 * claim (a run that errors, a worker that dies, a graceful pause all end a run). pg-boss's own retry
 * counter is not consulted: a killed worker never reports to pg-boss, so only the row's counter sees it.
 */
export interface RetryPolicy {
  /** Runs a job may start (REINDEX_MAX_ATTEMPTS). */
  maxAttempts: number;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

/** True when a job that has started `attempts` runs may not be started again. */
export function attemptsExhausted(policy: RetryPolicy, attempts: number): boolean {
  return attempts >= policy.maxAttempts;
}

/** The FAILED reason of a job given up, naming the setting that would allow more. */
export function exhaustedReason(policy: RetryPolicy, attempts: number, last: string | null): string {
  return (
    `given up after ${attempts} attempt(s) (REINDEX_MAX_ATTEMPTS=${policy.maxAttempts})` +
    (last ? `; last error: ${last}` : ': its worker stopped without finishing each time (killed or crashed)')
  );
}

/** pg-boss retries a run that threw after this many seconds, doubling. */
export const RETRY_DELAY_SECONDS = 5;
