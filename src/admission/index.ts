/**
 * Admission control: the one home of the bounds on the expensive paths of a request (docs/ARCHITECTURE.md).
 * Each stage has its own gate (concurrency, wait queue, wait time) sized by ADMISSION_* settings;
 * images/, embedding/ and search/ take the gates from here, never their own.
 *
 *  - fetch:  URL image downloads (network-bound; many may be in flight);
 *  - decode: sharp decodes of a query image (libuv pool-bound);
 *  - embed:  query images and texts in the embedding engine (CPU-bound);
 *  - query:  similarity statements on the database (pool-bound), and hydrating their products;
 *  - heavyQuery: the same for a large k (over `heavyK`), kept apart so that a few clients asking for
 *    hundreds of products each (and their descriptions) cannot make a storefront's k: 10 wait behind them.
 *
 * Plus the request deadline: a signal that aborts on timeout (TIMEOUT) or when the client goes away.
 */
import { AppError, ErrorCode } from '../errors.js';
import { Gate, type GateLimits } from './gate.js';

export { Gate, abortError, type GateLimits, type GateStats, type Release } from './gate.js';

export type Stage = 'fetch' | 'decode' | 'embed' | 'query' | 'heavyQuery';

export interface AdmissionSettings {
  stages: Record<Stage, GateLimits>;
  /** A similarity query with k above this goes through the heavyQuery gate. */
  heavyK: number;
}

export class Admission {
  readonly gates: Record<Stage, Gate>;
  readonly heavyK: number;

  constructor(settings: AdmissionSettings) {
    this.gates = {
      fetch: new Gate('fetch', settings.stages.fetch),
      decode: new Gate('decode', settings.stages.decode),
      embed: new Gate('embed', settings.stages.embed),
      query: new Gate('query', settings.stages.query),
      heavyQuery: new Gate('heavyQuery', settings.stages.heavyQuery),
    };
    this.heavyK = settings.heavyK;
  }

  /** The gate of a similarity query asking for k products. */
  queryGate(k: number): Gate {
    return k > this.heavyK ? this.gates.heavyQuery : this.gates.query;
  }

  stats() {
    return Object.fromEntries(Object.entries(this.gates).map(([k, g]) => [k, g.stats()]));
  }
}

/** Settings for processes without a configuration (CLI, tests): wide enough never to refuse in practice. */
export function unboundedAdmission(): Admission {
  const wide: GateLimits = { concurrency: 1_000, maxQueue: 100_000, maxWaitMs: 3_600_000 };
  return new Admission({ stages: { fetch: wide, decode: wide, embed: wide, query: wide, heavyQuery: wide }, heavyK: 1_000_000 });
}

/**
 * A per-request deadline: aborts after `timeoutMs` with TIMEOUT, or earlier by `abort()` (client gone).
 * `signal` goes down to the gates and the URL fetch.
 */
export function requestDeadline(timeoutMs: number): { signal: AbortSignal; abort(reason?: unknown): void; dispose(): void } {
  const controller = new AbortController();
  const timer =
    timeoutMs > 0
      ? setTimeout(
          () =>
            controller.abort(
              new AppError(ErrorCode.TIMEOUT, `The request took longer than ${timeoutMs} ms.`, { timeoutMs, reason: 'request_deadline' }),
            ),
          timeoutMs,
        )
      : undefined;
  timer?.unref?.();
  return {
    signal: controller.signal,
    abort: (reason?: unknown) => controller.abort(reason ?? new AppError(ErrorCode.REQUEST_ABORTED, 'The client went away.')),
    dispose: () => clearTimeout(timer),
  };
}

/** Settles like `work`, or rejects as soon as `signal` fires (the work itself is left to end on its own). */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function abortReason(signal: AbortSignal): AppError {
  return signal.reason instanceof AppError ? signal.reason : new AppError(ErrorCode.REQUEST_ABORTED, 'The request was cancelled.');
}
