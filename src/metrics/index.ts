/**
 * The one home of the service's metrics. Other modules call the small `metrics` facade below; until
 * the service enables Prometheus (prometheus.ts, at `serve`), every call is a no-op, so tests, the CLI
 * and the demo run without a registry and nothing accumulates in processes that never expose it.
 */

/** What a module may report. Labels are small closed sets (codes, names), never user input. */
export interface MetricsSink {
  /** One HTTP request: route pattern (not the raw URL, which would explode the label set), status. */
  httpRequest(route: string, method: string, status: number, seconds: number): void;
  /** One GraphQL operation: its name (or "anonymous"), "ok" or the first error's extensions.code. */
  graphqlOperation(operation: string, outcome: string, seconds: number): void;
  /** A similarity search: the strategy chosen, and whether HNSW came back short and fell back to exact. */
  searchStrategy(strategy: string, fellBack: boolean): void;
  /** One inference batch of a model's variant ('image' or 'text'), its size and its duration. */
  embeddingBatch(model: string, variant: string, kind: string, size: number, seconds: number): void;
  /** Reports a model's queue depth while it is loaded; call the returned function when it is closed. */
  trackEmbeddingQueue(model: string, variant: string, depth: () => number): () => void;
  /** An image fetch by URL: "ok" or the failure's reason (the AppError's details.reason or code). */
  imageFetch(outcome: string): void;
  /** A request refused by admission control (rate limit, overload), by route. */
  admissionRefused(path: string, reason?: string): void;
  /** A reindex job's progress after each committed batch. */
  reindexProgress(model: string, processed: number, total: number | null, failedDelta: number): void;
  /** Reports a database pool's use while it is open; call the returned function when it is closed. */
  trackDatabasePool(stats: () => PoolStats | null): () => void;
}

export interface PoolStats {
  /** Connections open, idle among them, and callers waiting for one. */
  total: number;
  idle: number;
  waiting: number;
  max: number;
}

const noop = () => {};

export const noopMetrics: MetricsSink = {
  httpRequest: noop,
  graphqlOperation: noop,
  searchStrategy: noop,
  embeddingBatch: noop,
  trackEmbeddingQueue: () => noop,
  imageFetch: noop,
  admissionRefused: noop,
  reindexProgress: noop,
  trackDatabasePool: () => noop,
};

// Gauge sources are kept here, not in the sink: a model or a pool opened before metrics are enabled
// (tests, the demo, which build them first) is still reported once they are. A Map entry per source.
const queues = new Map<symbol, { model: string; variant: string; depth: () => number }>();
const pools = new Map<symbol, () => PoolStats | null>();

/** The embedding queues and database pools open now, for the sink to read at scrape time. */
export function trackedSources() {
  return { queues: [...queues.values()], pools: [...pools.values()] };
}

let current: MetricsSink = noopMetrics;

/**
 * The facade every module imports. It forwards to the installed sink at call time, so a module may
 * import it before the service has decided whether metrics are on.
 */
export const metrics: MetricsSink = {
  httpRequest: (...a) => current.httpRequest(...a),
  graphqlOperation: (...a) => current.graphqlOperation(...a),
  searchStrategy: (...a) => current.searchStrategy(...a),
  embeddingBatch: (...a) => current.embeddingBatch(...a),
  trackEmbeddingQueue: (model, variant, depth) => {
    const key = Symbol(model);
    queues.set(key, { model, variant, depth });
    return () => void queues.delete(key);
  },
  imageFetch: (...a) => current.imageFetch(...a),
  admissionRefused: (...a) => current.admissionRefused(...a),
  reindexProgress: (...a) => current.reindexProgress(...a),
  trackDatabasePool: (stats) => {
    const key = Symbol('pool');
    pools.set(key, stats);
    return () => void pools.delete(key);
  },
};

/** Installs a sink (prometheus.ts does at start-up); returns the one it replaced. */
export function installMetrics(sink: MetricsSink): MetricsSink {
  const previous = current;
  current = sink;
  return previous;
}

/** An outcome label from an error: an AppError's details.reason, else its code, else "error". */
export function outcomeOf(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; details?: { reason?: unknown } };
    if (typeof e.details?.reason === 'string') return e.details.reason;
    if (typeof e.code === 'string') return e.code;
  }
  return 'error';
}
