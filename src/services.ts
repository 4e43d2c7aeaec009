/**
 * The composition root: the long-lived parts of a process (database, models, search, ingest settings,
 * job queue), built once from the configuration. `serve` (app.ts), every CLI command (cli/context.ts)
 * and the demo build them here, so the migrate-or-refuse rule, the fetch options, the image limits and
 * the way a model is loaded exist once.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Admission } from './admission/index.js';
import type { IngestContext } from './catalog/ingest.js';
import type { Config } from './config.js';
import { openDatabase, type Database } from './db/connect.js';
import { checkVectorExtension } from './db/extension.js';
import { migrateToLatest, pendingMigrations } from './db/migrate.js';
import { applySearchLanguage, checkSearchLanguage } from './db/search-language.js';
import { fetchProgressBar } from './cli/model.js';
import { createEmbedder, type Embedder } from './embedding/index.js';
import { expectedProvider } from './embedding/providers.js';
import { ensureModel, findCachedModel } from './hub/locate.js';
import { DEFAULT_MODEL_REPO } from './hub/paths.js';
import { AppError, ErrorCode } from './errors.js';
import type { ImageLimits } from './images/decode.js';
import type { FetchImageOptions } from './images/fetch.js';
import { JobRunner } from './jobs/runner.js';
import type { Logger } from './log.js';
import { ModelService } from './models/service.js';
import { CompareService } from './search/compare.js';
import { PageCursors } from './search/cursor.js';
import { SearchService } from './search/service.js';

export interface Services {
  config: Config;
  log: Logger;
  database: Database;
  models: ModelService;
  search: SearchService;
  /** compareModels: one query against several models, and their overlap. */
  compare: CompareService;
  fetchOptions: FetchImageOptions;
  imageLimits: ImageLimits;
  /** What catalog/ingest needs: the same database, models and limits. */
  ingest: IngestContext;
  /** Reindex jobs on the pg-boss queue (docs/reindex.md); started only when `jobs` asks for it. */
  jobs: JobRunner;
  /** Loads a model from a directory with the configured engine settings (the caller owns the embedder). */
  loadEmbedder(dir: string): Promise<Embedder>;
  /** Stops the job queue, closes the embedders, then the database. */
  close(): Promise<void>;
}

export interface ServiceOverrides {
  /** A database the caller opened (tests); the services then own it. */
  database?: Database;
  /**
   * An embedder the caller created (tests, demo) instead of the configured model; null: none.
   * The services own it from here on (closed with them, also when building fails).
   */
  embedder?: { embedder: Embedder; source: string } | null;
  /**
   * Which model to load when no embedder is given: 'serve' the configured or cached one, else the
   * default fetched from the hub (offline: none); 'configured' only a configured or cached one (CLI);
   * 'none' no model.
   */
  model?: 'serve' | 'configured' | 'none';
  /** Open the embedded database's psql port for analysts (default true; the CLI keeps it closed). */
  psqlPort?: boolean;
  /** Whose connections: the service's (request statement_timeout) or an admin command's (default). */
  purpose?: 'service' | 'admin';
  /** Start the job queue: 'work' runs jobs here, 'enqueue' only queues them, 'off' (default) neither. */
  jobs?: 'work' | 'enqueue' | 'off';
}

/** The model directory to load: EMBEDDING_MODEL_DIR, else the default model if it is in the cache. */
export function configuredModelDir(config: Config): { dir: string; source: string } | null {
  if (config.embedding.modelDir) return { dir: config.embedding.modelDir, source: path.basename(config.embedding.modelDir) };
  // The hub cache (HF_HUB_CACHE / HF_HOME, shared with other Hugging Face tools) first, then .cache/models.
  const cached = findCachedModel(DEFAULT_MODEL_REPO);
  return cached ? { dir: cached, source: DEFAULT_MODEL_REPO } : null;
}

export async function loadEmbedder(config: Config, dir: string, log: Logger): Promise<Embedder> {
  // EMBEDDING_LOGIT_SCALE/_BIAS describe the configured model (its directory, or the default model's)
  const calibration = config.embedding.calibration;
  const configured = calibration ? configuredModelDir(config) : null;
  return createEmbedder(
    {
      modelDir: dir,
      provider: config.embedding.provider,
      workers: config.embedding.workers,
      intraOpThreads: config.embedding.intraOpThreads,
      maxBatch: config.embedding.maxBatch,
      maxWaitMs: config.embedding.maxWaitMs,
      threadNice: config.limits.computeThreadNice,
      ...(config.embedding.variant ? { variant: config.embedding.variant } : {}),
      ...(calibration && (!configured || path.resolve(configured.dir) === path.resolve(dir)) ? { calibration } : {}),
    },
    log,
  );
}

export function fetchOptionsOf(config: Config): FetchImageOptions {
  return {
    maxBytes: config.images.maxBytes,
    totalTimeoutMs: config.images.fetch.totalTimeoutMs,
    connectTimeoutMs: config.images.fetch.connectTimeoutMs,
    dnsTimeoutMs: config.limits.dnsTimeoutMs,
    maxRedirects: config.images.fetch.maxRedirects,
    allowedPrivateHosts: config.images.fetch.allowedPrivateHosts,
  };
}

export function imageLimitsOf(config: Config): ImageLimits {
  return {
    maxImageBytes: config.images.maxBytes,
    maxImagePixels: config.images.maxPixels,
    maxScalablePixels: config.images.maxScalablePixels,
  };
}

/**
 * Opens the configured database (no migrations); on PostgreSQL, checks that pgvector is there.
 * `purpose`: the service's pool gets the request statement_timeout, admin commands the longer one.
 */
export async function openConfiguredDatabase(
  config: Config,
  log: Logger,
  opts: { psqlPort?: boolean; purpose?: 'service' | 'admin' } = {},
): Promise<Database> {
  const c = config.database;
  const database = await openDatabase(
    c.kind === 'postgres'
      ? {
          kind: 'postgres',
          url: c.url,
          poolSize: c.poolSize,
          statementTimeoutMs: opts.purpose === 'service' ? c.statementTimeoutMs : c.adminStatementTimeoutMs,
          connectTimeoutMs: c.connectTimeoutMs,
          // Replicas serve the service's searches only: admin commands (migrate, import, reindex) and
          // everything they read stay on the primary.
          ...(opts.purpose === 'service' && c.readUrls?.length ? { readUrls: c.readUrls } : {}),
        }
      : {
          kind: 'pglite',
          dataDir: c.dataDir,
          // Without a port, no psql front is started (one-shot commands must not take the service's port).
          ...(opts.psqlPort === false || c.psql?.off ? {} : { psqlPort: c.psqlPort }),
          ...(c.psql
            ? {
                psql: {
                  password: c.psql.password,
                  trust: c.psql.trust,
                  maxHoldMs: c.psql.maxHoldMs,
                  statementTimeoutMs: c.psql.statementTimeoutMs,
                },
              }
            : {}),
        },
    log,
  );
  try {
    if (database.kind === 'postgres') {
      const version = await checkVectorExtension(database.db);
      log.info({ pgvector: version }, 'connected to PostgreSQL');
      // A replica down at start is no reason to refuse it: reads fall back to the primary until it answers.
      if (database.readRouter) log.info({ replicas: database.readRouter.replicaNames }, 'search reads go to the read replicas');
    }
  } catch (err) {
    await database.close();
    throw err;
  }
  return database;
}

/**
 * The embedded database belongs to this process and is kept migrated; a server's migrations are an
 * operator's step, so pending ones are refused rather than applied behind their back.
 */
async function migrateOrRefuse(database: Database, log: Logger, config: Config): Promise<void> {
  const language = config.search.language;
  if (database.kind === 'pglite') {
    const applied = await migrateToLatest(database.db);
    if (applied.length) log.info({ applied }, 'migrated the embedded database');
    if (language && (await applySearchLanguage(database.db, language)))
      log.info({ language }, 'rebuilt the full-text documents in the configured language');
    return;
  }
  const pending = await pendingMigrations(database.db);
  if (pending.length) {
    throw new AppError(
      ErrorCode.CONFLICT,
      `database migrations are pending (${pending.join(', ')}): apply them first (vps migrate, or npm run migrate)`,
      { pending },
    );
  }
  // Like a migration: rebuilding the documents is the operator's step (vps migrate), not the service's.
  if (language) await checkSearchLanguage(database.db, language);
}

/**
 * With no model configured or cached, fetch the default one (progress on stderr). Offline, the
 * service still starts: the catalog API works and search by image or text answers MODEL_UNAVAILABLE.
 */
async function fetchDefaultModel(config: Config, log: Logger): Promise<{ dir: string; source: string } | null> {
  if (!config.embedding.autoFetch) return null;
  try {
    const dir = await ensureModel(
      {
        repo: DEFAULT_MODEL_REPO,
        hubUrl: config.hub.hubUrl,
        ...(config.hub.token ? { token: config.hub.token } : {}),
        ...(config.embedding.variant ? { variant: config.embedding.variant } : {}),
        provider: expectedProvider(config.embedding.provider),
        onProgress: fetchProgressBar(),
      },
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

export async function buildServices(config: Config, log: Logger, overrides: ServiceOverrides = {}): Promise<Services> {
  let database: Database;
  try {
    database =
      overrides.database ??
      (await openConfiguredDatabase(config, log, { psqlPort: overrides.psqlPort ?? true, purpose: overrides.purpose ?? 'admin' }));
  } catch (err) {
    await overrides.embedder?.embedder.close();
    throw err;
  }
  const models = new ModelService(database, log, {
    load: (dir) => loadEmbedder(config, dir, log),
  });
  const fetchOptions = fetchOptionsOf(config);
  const imageLimits = imageLimitsOf(config);
  const jobsMode = overrides.jobs ?? 'off';
  const jobs = new JobRunner(database, models, log, {
    ...config.jobs,
    work: jobsMode === 'work' && config.jobs.enabled,
    imageLimits,
    categoryIndexes: config.search.categoryIndexes,
  });
  let jobsStarted = false;
  const close = async () => {
    if (jobsStarted) await jobs.stop();
    await models.close();
    await database.close();
  };
  let given = overrides.embedder;
  try {
    await migrateOrRefuse(database, log, config);

    let loaded = given;
    given = undefined; // from here on, models owns it (closed by close())
    if (loaded === undefined && overrides.model !== 'none') {
      const configured =
        configuredModelDir(config) ?? ((overrides.model ?? 'serve') === 'serve' ? await fetchDefaultModel(config, log) : null);
      if (configured) loaded = { embedder: await loadEmbedder(config, configured.dir, log), source: configured.source };
    }
    if (loaded) {
      const embedder = loaded.embedder;
      const model = await models.add(embedder, loaded.source).catch(async (err: unknown) => {
        await embedder.close();
        throw err;
      });
      const info = embedder.info();
      log.info({ model: model.id, dimension: info.dimension, provider: info.provider, active: model.isActive }, 'embedding model loaded');
    }
    // the serving process also loads the other ready models in the cache (several models served at once)
    if (overrides.purpose === 'service' && overrides.model !== 'none') await models.loadServable();

    if (jobsMode !== 'off') {
      jobsStarted = true; // stopped on failure too: start() may fail with the queue half up
      await jobs.start();
    }
  } catch (err) {
    await given?.embedder.close();
    await close();
    throw err;
  }
  // Search reads (statements, product hydration, planner statistics) tolerate replication lag: replicas.
  const search = new SearchService(database.reads, models, fetchOptions, imageLimits, {
    admission: new Admission(config.limits.admission),
    maxQueryPixels: config.limits.searchMaxPixels,
    cursors: pageCursors(config),
  });
  return {
    config,
    log,
    database,
    models,
    search,
    compare: new CompareService(search, models, fetchOptions),
    fetchOptions,
    imageLimits,
    ingest: { db: database.db, models, fetchOptions, imageLimits, maxImagesPerProduct: config.images.maxPerProduct },
    jobs,
    loadEmbedder: (dir) => loadEmbedder(config, dir, log),
    close,
  };
}

/** Page cursors signed with the configured key; without one, a key of this process's own. */
function pageCursors(config: Config): PageCursors {
  const c = config.search.cursors;
  return c.secret
    ? new PageCursors({ current: c.secret, previous: c.previousSecret, ttlSeconds: c.ttlSeconds })
    : new PageCursors({ current: randomBytes(32).toString('base64url'), ttlSeconds: c.ttlSeconds });
}
