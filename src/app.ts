/** Builds the running service from a configuration, and takes it down again in the right order. */
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/connect.js';
import { checkVectorExtension } from './db/extension.js';
import { migrateToLatest, pendingMigrations } from './db/migrate.js';
import type { Logger } from './log.js';
import { startHttpServer, type HttpServer } from './server.js';
import type { Services } from './services.js';

export interface RunningService {
  services: Services;
  http: HttpServer;
  /** Graceful stop: HTTP first (drains in-flight requests), then what the requests used. */
  stop(): Promise<void>;
}

export async function openConfiguredDatabase(config: Config, log: Logger): Promise<Database> {
  const database = await openDatabase(
    config.database.kind === 'postgres'
      ? { kind: 'postgres', url: config.database.url, poolSize: config.database.poolSize }
      : { kind: 'pglite', dataDir: config.database.dataDir, psqlPort: config.database.psqlPort },
    log,
  );
  try {
    if (database.kind === 'postgres') {
      const version = await checkVectorExtension(database.db);
      log.info({ pgvector: version }, 'connected to PostgreSQL');
    }
  } catch (err) {
    await database.close();
    throw err;
  }
  return database;
}

/** `database` lets a caller (tests) hand over one it opened itself; the service then owns it. */
export async function startService(config: Config, log: Logger, opts: { database?: Database } = {}): Promise<RunningService> {
  const database = opts.database ?? (await openConfiguredDatabase(config, log));
  try {
    if (database.kind === 'pglite') {
      // The embedded database belongs to this process: keep it migrated without a separate step.
      const applied = await migrateToLatest(database.db);
      if (applied.length) log.info({ applied }, 'migrated the embedded database');
    } else {
      const pending = await pendingMigrations(database.db);
      if (pending.length) log.warn({ pending }, 'database migrations are pending: run `npm run migrate` (readyz reports not ready until then)');
    }
    const services: Services = { config, log, database };
    const http = await startHttpServer(services);
    return {
      services,
      http,
      stop: async () => {
        await http.close();
        await database.close();
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}
