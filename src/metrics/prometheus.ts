/**
 * The Prometheus side of src/metrics: one registry per process (a process serves one service; tests
 * that start several in one process share it), installed as the metrics sink when `serve` starts with
 * METRICS_ENABLED. Histogram buckets are in seconds, as Prometheus' conventions want.
 */
import client from 'prom-client';
import { installMetrics, trackedSources, type MetricsSink, type PoolStats } from './index.js';

export interface PrometheusMetrics {
  registry: client.Registry;
  /** The exposition text and its content type, for GET /metrics. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

let instance: PrometheusMetrics | null = null;

/** Creates the registry on first use and installs it as the sink; later calls return the same one. */
export function enablePrometheus(): PrometheusMetrics {
  if (instance) return instance;
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'vps_' });

  const httpDuration = new client.Histogram({
    name: 'vps_http_request_duration_seconds',
    help: 'HTTP request latency by route pattern, method and status code.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const gqlDuration = new client.Histogram({
    name: 'vps_graphql_operation_duration_seconds',
    help: 'GraphQL operation latency by operation name and outcome ("ok" or the first error code).',
    labelNames: ['operation', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const searches = new client.Counter({
    name: 'vps_search_total',
    help: 'Similarity searches by the strategy chosen and whether HNSW fell back to an exact scan.',
    labelNames: ['strategy', 'fallback'] as const,
    registers: [registry],
  });
  const batchSize = new client.Histogram({
    name: 'vps_embedding_batch_size',
    help: 'Inputs per inference batch, by model, variant and input kind.',
    labelNames: ['model', 'variant', 'kind'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const inference = new client.Histogram({
    name: 'vps_embedding_inference_duration_seconds',
    help: 'Time one inference batch takes in the worker pool, by model, variant and input kind.',
    labelNames: ['model', 'variant', 'kind'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new client.Gauge({
    name: 'vps_embedding_queue_depth',
    help: 'Inputs waiting for an inference batch, by model and variant.',
    labelNames: ['model', 'variant'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const q of trackedSources().queues) this.inc({ model: q.model, variant: q.variant }, q.depth());
    },
  });
  const fetches = new client.Counter({
    name: 'vps_image_fetch_total',
    help: 'Image fetches by URL, by outcome ("ok" or the failure reason).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const refusals = new client.Counter({
    name: 'vps_admission_refused_total',
    help: 'Requests refused by admission control, by route and reason.',
    labelNames: ['path', 'reason'] as const,
    registers: [registry],
  });
  const reindexProcessed = new client.Gauge({
    name: 'vps_reindex_processed',
    help: 'Products processed by the running (or last) reindex job of a model.',
    labelNames: ['model'] as const,
    registers: [registry],
  });
  const reindexTotal = new client.Gauge({
    name: 'vps_reindex_total',
    help: 'Products the running (or last) reindex job of a model has to process (last count).',
    labelNames: ['model'] as const,
    registers: [registry],
  });
  const reindexFailed = new client.Counter({
    name: 'vps_reindex_failed_total',
    help: 'Products a reindex could not embed, by model.',
    labelNames: ['model'] as const,
    registers: [registry],
  });
  const pool = (name: string, help: string, pick: (s: PoolStats) => number) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        let n = 0;
        for (const stats of trackedSources().pools) n += pick(stats() ?? { total: 0, idle: 0, waiting: 0, max: 0 });
        this.set(n);
      },
    });
  pool('vps_db_pool_connections', 'PostgreSQL pool connections open.', (s) => s.total);
  pool('vps_db_pool_idle', 'PostgreSQL pool connections open and idle.', (s) => s.idle);
  pool('vps_db_pool_waiting', 'Callers waiting for a PostgreSQL pool connection.', (s) => s.waiting);
  pool('vps_db_pool_max', 'PostgreSQL pool size limit.', (s) => s.max);

  const sink: MetricsSink = {
    httpRequest: (route, method, status, seconds) => httpDuration.observe({ route, method, status: String(status) }, seconds),
    graphqlOperation: (operation, outcome, seconds) => gqlDuration.observe({ operation, outcome }, seconds),
    searchStrategy: (strategy, fellBack) => searches.inc({ strategy, fallback: String(fellBack) }),
    embeddingBatch: (model, variant, kind, size, seconds) => {
      batchSize.observe({ model, variant, kind }, size);
      inference.observe({ model, variant, kind }, seconds);
    },
    // Gauge sources are tracked by the facade (index.ts), read above at scrape time.
    trackEmbeddingQueue: () => () => {},
    imageFetch: (outcome) => fetches.inc({ outcome }),
    admissionRefused: (path, reason = 'refused') => refusals.inc({ path, reason }),
    reindexProgress: (model, processed, total, failedDelta) => {
      reindexProcessed.set({ model }, processed);
      if (total !== null) reindexTotal.set({ model }, total);
      if (failedDelta > 0) reindexFailed.inc({ model }, failedDelta);
    },
    trackDatabasePool: () => () => {},
  };
  installMetrics(sink);
  instance = {
    registry,
    scrape: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
  return instance;
}
