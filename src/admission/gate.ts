/**
 * A gate: at most `concurrency` executions at once and at most `maxQueue` callers waiting, each for at
 * most `maxWaitMs`. A caller that finds the queue full, or waits too long, is refused at once with
 * OVERLOADED; a caller whose AbortSignal fires (client gone, request deadline) leaves the queue.
 *
 * Written here rather than taken from p-limit or p-queue: neither bounds the length of its queue, times out
 * a wait (p-queue's timeout covers the running task, not the wait), nor drops a waiting task on an
 * AbortSignal without running it, and those three are the point of admission control.
 */
import { AppError, ErrorCode } from '../errors.js';

export interface GateLimits {
  /** Executions at once. */
  concurrency: number;
  /** Callers allowed to wait for a slot; one more is refused at once. */
  maxQueue: number;
  /** Longest wait for a slot before OVERLOADED. */
  maxWaitMs: number;
}

export interface GateStats {
  active: number;
  queued: number;
  refused: number;
}

interface Waiter {
  grant: () => void;
}

/** A held slot; release exactly once (extra calls are ignored). */
export type Release = () => void;

export class Gate {
  private active = 0;
  private readonly queue: Waiter[] = [];
  private refused = 0;

  constructor(
    readonly name: string,
    readonly limits: GateLimits,
  ) {}

  stats(): GateStats {
    return { active: this.active, queued: this.queue.length, refused: this.refused };
  }

  /** Waits for a slot (bounded); the caller must call the returned release. */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.active < this.limits.concurrency && this.queue.length === 0) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.limits.maxQueue) {
      this.refused++;
      return Promise.reject(this.overloaded('queue_full'));
    }
    return new Promise<Release>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
      };
      const waiter: Waiter = {
        grant: () => {
          cleanup();
          this.active++;
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        cleanup();
        reject(abortError(signal!));
      };
      const timer = setTimeout(() => {
        cleanup();
        this.refused++;
        reject(this.overloaded('wait_timeout'));
      }, this.limits.maxWaitMs);
      timer.unref?.();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  /** Runs `fn` in a slot; see acquire. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
      this.queue[0]?.grant();
    };
  }

  private overloaded(reason: 'queue_full' | 'wait_timeout'): AppError {
    return new AppError(ErrorCode.OVERLOADED, `The service is busy (${this.name}); retry shortly.`, {
      stage: this.name,
      reason,
      retryAfterSeconds: 1,
      active: this.active,
      queued: this.queue.length,
    });
  }
}

/** What a waiting caller rejects with when its signal fires: the signal's AppError, or TIMEOUT/aborted. */
export function abortError(signal: AbortSignal): AppError {
  const reason: unknown = signal.reason;
  if (reason instanceof AppError) return reason;
  return new AppError(ErrorCode.REQUEST_ABORTED, 'The request was cancelled.', undefined, { cause: reason });
}
