/** The running service: the services (services.ts) behind the HTTP server, and their stop in the right order. */
import type { Config } from './config.js';
import Fastify from 'fastify';
import type { Logger } from './log.js';
import { lowerComputeThreads } from './admission/thread-priority.js';
import { enablePrometheus } from './metrics/prometheus.js';
import { registerMetricsRoute, startHttpServer, type HttpServer } from './server.js';
import { buildServices, type ServiceOverrides, type Services } from './services.js';

// Start-up helpers live in the composition root; re-exported for callers that start a model by hand.
export { configuredModelDir, loadEmbedder, openConfiguredDatabase } from './services.js';

export interface RunningService {
  services: Services;
  http: HttpServer;
  /** Where /metrics is served when METRICS_PORT gives it its own listener. */
  metricsUrl?: string;
  /** Graceful stop: HTTP first (drains in-flight requests), then what the requests used. */
  stop(): Promise<void>;
}

/** Overrides for tests and the demo: a database or an embedder they made (see ServiceOverrides). */
export type StartOptions = Pick<ServiceOverrides, 'database' | 'embedder'>;

export async function startService(config: Config, log: Logger, opts: StartOptions = {}): Promise<RunningService> {
  // Before the services: the model and the pool register their gauges as they are built.
  if (config.metrics.enabled) enablePrometheus();
  const services = await buildServices(config, log, { ...opts, model: 'serve', jobs: 'work', purpose: 'service' });
  // Serving before computing: photo decoding yields the CPU to requests and the database (the model's
  // threads lower themselves as they start).
  const lowered = await lowerComputeThreads(config.limits.computeThreadNice);
  log.info({ nice: config.limits.computeThreadNice, ...lowered }, 'compute threads: CPU priority');
  let http: HttpServer | undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    http = await startHttpServer(services);
    if (config.metrics.enabled && config.metrics.port !== undefined)
      metricsServer = await startMetricsServer(config.http.host, config.metrics.port);
  } catch (err) {
    await http?.close();
    await services.close();
    throw err;
  }
  const server = http;
  return {
    services,
    http: server,
    ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    stop: async () => {
      await metricsServer?.close();
      await server.close();
      await services.close();
    },
  };
}

interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** METRICS_PORT: /metrics alone on its own listener, so it can stay off the public port. */
async function startMetricsServer(host: string, port: number): Promise<MetricsServer> {
  const app = Fastify({ logger: false });
  registerMetricsRoute(app);
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`, close: () => app.close() };
}

/** SIGTERM/SIGINT: stop gracefully (drain in-flight requests, close pools), then exit 0 (1 on error). */
export function stopOnSignals(service: RunningService, log: Logger): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining in-flight requests');
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
