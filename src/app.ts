/** The running service: the services (services.ts) behind the HTTP server, and their stop in the right order. */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { startHttpServer, type HttpServer } from './server.js';
import { buildServices, type ServiceOverrides, type Services } from './services.js';

// Start-up helpers live in the composition root; re-exported for callers that start a model by hand.
export { configuredModelDir, loadEmbedder, openConfiguredDatabase } from './services.js';

export interface RunningService {
  services: Services;
  http: HttpServer;
  /** Graceful stop: HTTP first (drains in-flight requests), then what the requests used. */
  stop(): Promise<void>;
}

/** Overrides for tests and the demo: a database or an embedder they made (see ServiceOverrides). */
export type StartOptions = Pick<ServiceOverrides, 'database' | 'embedder'>;

export async function startService(config: Config, log: Logger, opts: StartOptions = {}): Promise<RunningService> {
  const services = await buildServices(config, log, { ...opts, model: 'serve', jobs: 'work', purpose: 'service' });
  const http = await startHttpServer(services).catch(async (err: unknown) => {
    await services.close();
    throw err;
  });
  return {
    services,
    http,
    stop: async () => {
      await http.close();
      await services.close();
    },
  };
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
