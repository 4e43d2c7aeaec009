/** Builds the running service from a configuration, and takes it down again in the right order. */
import fs from 'node:fs';
import path from 'node:path';
import { ModelRuntime } from './catalog/model-runtime.js';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/connect.js';
import { checkVectorExtension } from './db/extension.js';
import { migrateToLatest, pendingMigrations } from './db/migrate.js';
import { ensureModel } from './embedding/hub.js';
import { createEmbedder, DEFAULT_MODEL_REPO, modelCachePath, type Embedder } from './embedding/index.js';
import type { Logger } from './log.js';
import { cachedModelDir } from './jobs/models.js';
import { JobRunner } from './jobs/runner.js';
import { SearchService } from './search/service.js';
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

/** The model directory to load: EMBEDDING_MODEL_DIR, else the default model if it is in the cache. */
export function configuredModelDir(config: Config): { dir: string; source: string } | null {
  if (config.embedding.modelDir) return { dir: config.embedding.modelDir, source: path.basename(config.embedding.modelDir) };
  const cached = modelCachePath(DEFAULT_MODEL_REPO);
  return fs.existsSync(path.join(cached, 'config.json')) ? { dir: cached, source: DEFAULT_MODEL_REPO } : null;
}

/**
 * With no model configured or cached, fetch the default one (progress on stderr). Offline, the
 * service still starts: the catalog API works and search by image or text answers MODEL_UNAVAILABLE.
 */
async function fetchDefaultModel(config: Config, log: Logger): Promise<{ dir: string; source: string } | null> {
  if (!config.embedding.autoFetch) return null;
  try {
    const dir = await ensureModel(
      { repo: DEFAULT_MODEL_REPO, ...(config.embedding.variant ? { variant: config.embedding.variant } : {}) },
      log,
    );
    return { dir, source: DEFAULT_MODEL_REPO };
  } catch (err) {
    log.warn(
      `${err instanceof Error ? err.message : String(err)} ` +
        'Serving without an embedding model: the catalog API works; search by image or text answers MODEL_UNAVAILABLE. ' +
        'For a working search offline: `npm run demo`.',
    );
    return null;
  }
}

/** The variant the embedder opened (EMBEDDING_VARIANT=auto resolves at load); null for fp32, as before. */
const loadedVariant = (e: Embedder): string | null => {
  const v = e.info().variant;
  return v === undefined || v === 'fp32' ? null : v;
};

export async function loadEmbedder(config: Config, dir: string, log: Logger): Promise<Embedder> {
  return createEmbedder(
    {
      modelDir: dir,
      provider: config.embedding.provider,
      workers: config.embedding.workers,
      intraOpThreads: config.embedding.intraOpThreads,
      maxBatch: config.embedding.maxBatch,
      maxWaitMs: config.embedding.maxWaitMs,
      ...(config.embedding.variant ? { variant: config.embedding.variant } : {}),
      maxImageBytes: config.images.maxBytes,
      maxImagePixels: config.images.maxPixels,
    },
    log,
  );
}

export interface StartOptions {
  /** A database the caller opened (tests); the service then owns it. */
  database?: Database;
  /** An embedder the caller created (tests, demo), instead of the configured model; null: none. */
  embedder?: { embedder: Embedder; source: string } | null;
}

export async function startService(config: Config, log: Logger, opts: StartOptions = {}): Promise<RunningService> {
  const database = opts.database ?? (await openConfiguredDatabase(config, log));
  const models = new ModelRuntime(database.db, log);
  try {
    if (database.kind === 'pglite') {
      // The embedded database belongs to this process: keep it migrated without a separate step.
      const applied = await migrateToLatest(database.db);
      if (applied.length) log.info({ applied }, 'migrated the embedded database');
    } else {
      const pending = await pendingMigrations(database.db);
      if (pending.length) throw new Error(`database migrations are pending (${pending.join(', ')}): run \`npm run migrate\` first`);
    }

    let loaded = opts.embedder;
    if (loaded === undefined) {
      const configured = configuredModelDir(config) ?? (await fetchDefaultModel(config, log));
      if (configured) loaded = { embedder: await loadEmbedder(config, configured.dir, log), source: configured.source };
    }
    if (loaded) {
      const model = await models.add(loaded.embedder, loaded.source, loadedVariant(loaded.embedder));
      const info = loaded.embedder.info();
      log.info({ model: model.id, dimension: info.dimension, provider: info.provider, active: model.isActive }, 'embedding model loaded');
    }

    const fetchOptions = {
      maxBytes: config.images.maxBytes,
      totalTimeoutMs: config.images.fetch.totalTimeoutMs,
      connectTimeoutMs: config.images.fetch.connectTimeoutMs,
      maxRedirects: config.images.fetch.maxRedirects,
      allowedPrivateHosts: config.images.fetch.allowedPrivateHosts,
    };
    const jobs = new JobRunner(database, models, log, {
      ...config.jobs,
      work: config.jobs.enabled,
      loadModel: async (ref) => {
        const dir = cachedModelDir(ref);
        if (!dir) return null;
        const embedder = await loadEmbedder(config, dir, log);
        return { embedder, source: ref, variant: loadedVariant(embedder) };
      },
    });
    await jobs.start();
    const services: Services = {
      config,
      log,
      database,
      models,
      search: new SearchService(database.db, models, fetchOptions),
      fetchOptions,
      imageLimits: { maxImageBytes: config.images.maxBytes, maxImagePixels: config.images.maxPixels },
      jobs,
    };
    const http = await startHttpServer(services).catch(async (err) => {
      await jobs.stop();
      throw err;
    });
    return {
      services,
      http,
      stop: async () => {
        await http.close();
        await jobs.stop();
        await models.close();
        await database.close();
      },
    };
  } catch (err) {
    await models.close();
    await database.close();
    throw err;
  }
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
      (err) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
