/**
 * Micro-batcher: coalesces concurrent single-item requests into batches for a pool of executors.
 *
 * A queue (one per input kind) is dispatched when an executor is free and the queue is "ready": it holds
 * `maxBatch` items, or `maxWaitMs` have passed since its oldest item arrived *and* since an executor last
 * became free. While every executor is busy, requests keep queueing, so under load batches grow towards
 * `maxBatch`; the short linger after an executor frees up lets the callers whose batch just finished
 * resubmit and join the next batch, instead of batches alternating between one straggler and the rest
 * (1, 7, 1, 7 … at concurrency 8). A lone request on an idle engine waits at most `maxWaitMs`.
 */
import { AppError, ErrorCode } from '../errors.js';

export interface BatchExecutor<K extends string, P, R> {
  /** Number of executors able to take a batch right now. */
  free(): number;
  /** Whether any executor is alive or (re)starting; if not, queued work is failed. */
  alive(): boolean;
  run(kind: K, payloads: P[]): Promise<R[]>;
}

interface Pending<P, R> {
  payload: P;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
  at: number;
}

export interface BatcherStats {
  batches: number;
  items: number;
  maxObservedBatch: number;
}

export class MicroBatcher<K extends string, P, R> {
  private queues = new Map<K, Pending<P, R>[]>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastFree = 0;
  private freedAt = -Infinity;
  readonly stats: BatcherStats = { batches: 0, items: 0, maxObservedBatch: 0 };

  constructor(
    private readonly executor: BatchExecutor<K, P, R>,
    private readonly maxBatch: number,
    private readonly maxWaitMs: number,
  ) {
    if (!(maxBatch >= 1)) throw new Error('maxBatch must be ≥ 1');
    if (!(maxWaitMs >= 0)) throw new Error('maxWaitMs must be ≥ 0');
  }

  submit(kind: K, payload: P): Promise<R> {
    if (this.closed) return Promise.reject(new AppError(ErrorCode.MODEL_UNAVAILABLE, 'Embedder is closed'));
    return new Promise<R>((resolve, reject) => {
      let q = this.queues.get(kind);
      if (!q) this.queues.set(kind, (q = []));
      q.push({ payload, resolve, reject, at: performance.now() });
      this.pump();
    });
  }

  /** Call when an executor becomes free (or its state changed). */
  pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (!this.executor.alive()) {
      this.failAll(new AppError(ErrorCode.MODEL_UNAVAILABLE, 'No embedding worker is running'));
      return;
    }
    const now = performance.now();
    const free = this.executor.free();
    if (free > this.lastFree) this.freedAt = now;
    this.lastFree = free;
    while (this.executor.free() > 0) {
      let pick: K | null = null;
      let oldest = Infinity;
      for (const [kind, q] of this.queues) {
        const head = q[0];
        if (!head) continue;
        const ready = q.length >= this.maxBatch || now - Math.max(head.at, this.freedAt) >= this.maxWaitMs;
        if (ready && head.at < oldest) {
          oldest = head.at;
          pick = kind;
        }
      }
      if (pick === null) break;
      this.dispatch(pick, this.queues.get(pick)!.splice(0, this.maxBatch));
    }
    this.lastFree = this.executor.free();
    let deadline = Infinity;
    for (const q of this.queues.values()) if (q[0]) deadline = Math.min(deadline, Math.max(q[0].at, this.freedAt) + this.maxWaitMs);
    if (deadline !== Infinity && this.executor.free() > 0) {
      this.timer = setTimeout(() => this.pump(), Math.max(0, deadline - now));
    }
  }

  private dispatch(kind: K, items: Pending<P, R>[]): void {
    this.stats.batches++;
    this.stats.items += items.length;
    this.stats.maxObservedBatch = Math.max(this.stats.maxObservedBatch, items.length);
    let p: Promise<R[]>;
    try {
      p = this.executor.run(
        kind,
        items.map((i) => i.payload),
      );
    } catch (err) {
      p = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    p.then(
      (results) => {
        if (results.length !== items.length) {
          const err = new AppError(ErrorCode.EMBEDDING_FAILED, `Batch returned ${results.length} results for ${items.length} inputs`);
          items.forEach((i) => i.reject(err));
        } else {
          items.forEach((i, n) => i.resolve(results[n]!));
        }
      },
      (err: unknown) => items.forEach((i) => i.reject(err)),
    ).finally(() => this.pump());
  }

  pending(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  failAll(err: unknown): void {
    for (const q of this.queues.values()) q.splice(0).forEach((i) => i.reject(err));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.failAll(new AppError(ErrorCode.MODEL_UNAVAILABLE, 'Embedder is closed'));
  }
}
