/** What the admin commands share: the services of the composition root, as a one-shot command needs them. */
import net from 'node:net';
import type { IngestContext } from '../catalog/ingest.js';
import type { ModelService } from '../models/service.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connect.js';
import type { Logger } from '../log.js';
import { buildServices, type Services } from '../services.js';

export class CliError extends Error {}

/** True when something answers on the embedded database's psql port: a service most likely owns the data directory. */
function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(300, () => done(false));
  });
}

export interface CliContext {
  services: Services;
  database: Database;
  models: ModelService;
  ingest: IngestContext;
  close(): Promise<void>;
}

/**
 * The services for one command: the embedded database's psql port stays closed (the command must not
 * take the service's port), no model is fetched (only a configured or cached one is loaded), and the job
 * queue is not started (reindex starts its own runner).
 */
export async function openCliContext(config: Config, log: Logger, opts: { loadConfiguredModel: boolean }): Promise<CliContext> {
  if (config.database.kind === 'pglite' && config.database.psqlPort > 0 && (await portAnswers(config.database.psqlPort))) {
    throw new CliError(
      `The embedded database in ${config.dataDir} seems to be in use by a running service (its psql port ${config.database.psqlPort} answers). ` +
        'Stop the service first, or use its GraphQL API (upsertProducts, reindex), or run with DATABASE_URL.',
    );
  }
  const services = await buildServices(config, log, {
    psqlPort: false,
    model: opts.loadConfiguredModel ? 'configured' : 'none',
    jobs: 'off',
  });
  return { services, database: services.database, models: services.models, ingest: services.ingest, close: () => services.close() };
}
