/** What the admin commands share: the configured database (migrated), the models, and the ingest settings. */
import net from 'node:net';
import type { IngestContext } from '../catalog/ingest.js';
import { configuredModelDir, loadEmbedder, openConfiguredDatabase } from '../app.js';
import type { Config } from '../config.js';
import type { Database } from '../db/connect.js';
import { migrateToLatest, pendingMigrations } from '../db/migrate.js';
import type { Logger } from '../log.js';
import { ModelService } from '../models/service.js';

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
  database: Database;
  models: ModelService;
  ingest: IngestContext;
  close(): Promise<void>;
}

export async function openCliContext(config: Config, log: Logger, opts: { loadConfiguredModel: boolean }): Promise<CliContext> {
  if (config.database.kind === 'pglite' && config.database.psqlPort > 0 && (await portAnswers(config.database.psqlPort))) {
    throw new CliError(
      `The embedded database in ${config.dataDir} seems to be in use by a running service (its psql port ${config.database.psqlPort} answers). ` +
        'Stop the service first, or use its GraphQL API (upsertProducts, reindex), or run with DATABASE_URL.',
    );
  }
  const database = await openConfiguredDatabase(
    { ...config, database: config.database.kind === 'pglite' ? { ...config.database, psqlPort: undefined as never } : config.database },
    log,
  );
  const models = new ModelService(database, log, {
    load: (dir) => loadEmbedder(config, dir, log),
    variant: config.embedding.variant ?? null,
  });
  const close = async () => {
    await models.close();
    await database.close();
  };
  try {
    if (database.kind === 'pglite') await migrateToLatest(database.db);
    else {
      const pending = await pendingMigrations(database.db);
      if (pending.length) throw new CliError(`database migrations are pending (${pending.join(', ')}): run \`vps migrate\` first`);
    }
    if (opts.loadConfiguredModel) {
      const configured = configuredModelDir(config);
      if (configured)
        await models.add(await loadEmbedder(config, configured.dir, log), configured.source, config.embedding.variant ?? null);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    database,
    models,
    ingest: {
      db: database.db,
      models,
      fetchOptions: {
        maxBytes: config.images.maxBytes,
        totalTimeoutMs: config.images.fetch.totalTimeoutMs,
        connectTimeoutMs: config.images.fetch.connectTimeoutMs,
        maxRedirects: config.images.fetch.maxRedirects,
        allowedPrivateHosts: config.images.fetch.allowedPrivateHosts,
      },
      imageLimits: { maxImageBytes: config.images.maxBytes, maxImagePixels: config.images.maxPixels },
    },
    close,
  };
}
