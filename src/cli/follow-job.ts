/**
 * Following a job of the runner (a reindex, a tagging run) from the command line until it ends: one
 * progress bar, polled every 500 ms; Ctrl-C leaves the job to resume later rather than cancelling it.
 */
import { getReindexJob, type ReindexJob } from '../db/reindex-jobs.js';
import type { Db } from '../db/types.js';
import { ProgressBar } from './progress.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

export interface FollowJob {
  /** The progress bar's label. */
  label: string;
  /** How the bar names the items that failed (e.g. `failed`). */
  failedWord: string;
  /** Who resumes an interrupted job, for the message. */
  resumeHint: string;
  /** Prints the job's outcome once it has ended. */
  report(job: ReindexJob): Promise<void> | void;
}

/** Follows the job to its end (exit code 1 unless it succeeded) or to Ctrl-C. */
export async function followJob(db: Db, id: string, opts: FollowJob): Promise<void> {
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  const bar = new ProgressBar(opts.label);
  try {
    for (;;) {
      const j = (await getReindexJob(db, id))!;
      bar.update(j.processed, Math.max(j.total, j.processed), `${j.state}${j.failed ? ` ${opts.failedWord} ${j.failed}` : ''}`);
      if (['succeeded', 'failed', 'cancelled'].includes(j.state)) {
        bar.update(j.processed, Math.max(j.total, j.processed), j.state, true);
        bar.done();
        await opts.report(j);
        if (j.state !== 'succeeded') process.exitCode = 1;
        return;
      }
      if (interrupted) {
        bar.done();
        out(`interrupted: job ${j.id} pauses at ${j.processed}/${j.total}; it resumes when ${opts.resumeHint}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}
