/**
 * `npm run demo`: the service on the embedded database with a generated catalog, so the storefront page
 * at / shows something on a fresh clone, offline.
 *
 *   model: the real SigLIP 2 model when one is configured or cached (EMBEDDING_MODEL_DIR, or the default
 *          model in .cache/models), else the project's tiny stand-in model, written to
 *          .cache/models/tiny-demo; the log, the banner and the page (embeddingModel) say which.
 *   data:  DEMO_DATA_DIR (default ./data/demo), one embedded database per model, seeded once with
 *          DEMO_PRODUCTS (default 320) products through the public upsertProducts mutation; a later run
 *          finds them and skips seeding. If the model's files change, that model's demo database is rebuilt.
 *   admin: a random ADMIN_TOKEN for this run only, used for seeding and never printed.
 *
 *   --dataset OWNER/NAME [--limit N]: instead of the generated catalog, import a Hugging Face image
 *          dataset (e.g. ceyda/fashion-products-small, as in the article) with `vps import hf://datasets/…`'s
 *          code: default column mapping, progress bar, resumable (jobs/hf-dataset.ts).
 *
 * Other settings (PORT, HOST, LOG_LEVEL, EMBEDDING_*) come from the environment as for `npm start`;
 * DATABASE_URL is ignored (the demo never writes to a configured server).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ProgressBar } from '../cli/progress.js';
import { importHfDataset } from '../jobs/hf-dataset.js';
import { startService, stopOnSignals, type RunningService } from '../app.js';
import { loadConfig, loadConfigOrReport, type Config, type PgliteSettings } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { configuredModelDir, loadEmbedder } from '../services.js';
import { catalogSize, demoProducts, seedOverHttp } from './seed.js';

const TINY_DIR = path.resolve('.cache', 'models', 'tiny-demo');
const TINY_ID = 'vps/tiny-siglip-demo';

/** Identifies a model directory's contents: small files hashed whole, large ones by size and mtime. */
function fingerprint(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.statSync(p);
        h.update(`${path.relative(dir, p)}\0${st.size}\0`);
        h.update(st.size <= 32 * 1024 * 1024 ? fs.readFileSync(p) : String(st.mtimeMs));
      }
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 16);
}

async function chooseModel(config: Config, log: Logger): Promise<{ dir: string; source: string; real: boolean }> {
  const configured = configuredModelDir(config);
  if (configured) return { ...configured, real: true };
  // Written on every run (milliseconds): a changed generator never leaves a stale copy behind.
  // The generator is development tooling (scripts/, onnx-proto is a dev dependency), as is the demo.
  const { writeTinyModel } = await import('../../scripts/models/tiny-model.js');
  await writeTinyModel(TINY_DIR, { modelId: TINY_ID });
  log.info({ dir: path.relative(process.cwd(), TINY_DIR) }, 'no SigLIP 2 model in the cache: using the tiny stand-in model');
  return { dir: TINY_DIR, source: 'tiny stand-in (generated)', real: false };
}

async function main(): Promise<number> {
  const { values: args } = parseArgs({ options: { dataset: { type: 'string' }, limit: { type: 'string' } }, strict: true });
  const limit = args.limit === undefined ? undefined : Number(args.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    process.stderr.write('--limit must be a positive integer\n');
    return 2;
  }
  const env = { ...process.env };
  delete env.DATABASE_URL;
  const products = Number(env.DEMO_PRODUCTS ?? 320);
  if (!Number.isInteger(products) || products < 1 || products > 5000) {
    process.stderr.write('DEMO_PRODUCTS must be an integer from 1 to 5000\n');
    return 2;
  }
  const adminToken = randomBytes(24).toString('base64url');
  const config = loadConfigOrReport({ ...env, ADMIN_TOKEN: adminToken, DATA_DIR: env.DEMO_DATA_DIR ?? './data/demo' });
  if (!config) return 2;
  const log = createLogger(config.logLevel, { format: config.logFormat });

  const model = await chooseModel(config, log);
  const embedder = await loadEmbedder(config, model.dir, log);
  const info = embedder.info();
  const kind = model.real
    ? `${model.source} (${config.embedding.modelDir ? 'EMBEDDING_MODEL_DIR' : 'model cache'})`
    : 'tiny stand-in (photo search matches colour and shape; text search is not meaningful)';
  log.info(
    { model: info.modelId, source: model.source, provider: info.provider, dimension: info.dimension, standIn: !model.real },
    `demo embedding model: ${kind}`,
  );

  // One database per model, so switching between the stand-in and the real model never mixes vectors.
  const fp = fingerprint(model.dir);
  const dataDir = path.join(config.dataDir, info.modelId.replace(/[^\w.-]+/g, '_'));
  const marker = path.join(dataDir, 'demo-model.txt');
  const pgliteDir = path.join(dataDir, 'pglite');
  if (fs.existsSync(pgliteDir) && (!fs.existsSync(marker) || fs.readFileSync(marker, 'utf8').trim() !== fp)) {
    log.warn(
      { dataDir: path.relative(process.cwd(), dataDir) },
      "the model's files changed since this demo database was seeded: rebuilding it",
    );
    fs.rmSync(pgliteDir, { recursive: true, force: true });
  }
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(marker, `${fp}\n`);
  const demoConfig: Config = {
    ...config,
    dataDir,
    // Always the embedded database: the configured one's psql settings, else the defaults (a config without DATABASE_URL).
    database: { ...(config.database.kind === 'pglite' ? config.database : embeddedDefaults()), dataDir: pgliteDir },
  };

  // The demo database is disposable: one the migrations do not recognise (made by another version of
  // the code) is rebuilt; a taken port gives way to a free one unless PORT was set. A failed start
  // closes the embedder it was given (buildServices owns it from the call on), so each try loads the
  // model again.
  let service: RunningService | undefined;
  let current = demoConfig;
  let loaded = embedder;
  for (let attempt = 1; !service; attempt++) {
    try {
      service = await startService(current, log, { embedder: { embedder: loaded, source: model.source } });
    } catch (err) {
      if (attempt >= 3) throw err;
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && !env.PORT) {
        log.warn({ port: current.http.port }, 'port in use: taking a free one (set PORT to choose)');
        current = { ...current, http: { ...current.http, port: 0 } };
      } else if (/corrupted migrations/i.test(String((err as Error).message))) {
        log.warn(
          { dataDir: path.relative(process.cwd(), dataDir) },
          'the demo database was made by another version of the code: rebuilding it',
        );
        fs.rmSync(pgliteDir, { recursive: true, force: true });
      } else {
        throw err;
      }
      loaded = await loadEmbedder(config, model.dir, log);
    }
  }
  const url = service.http.url;

  stopOnSignals(service, log);

  const have = await catalogSize(url);
  if (args.dataset) {
    // Resumable and cheap to repeat: downloaded files and converted rows are kept, unchanged images are
    // not embedded again.
    const bar = new ProgressBar('dataset import');
    const result = await importHfDataset(service.services.ingest, {
      source: `hf://datasets/${args.dataset.replace(/^hf:\/\/datasets\//, '')}`,
      hubUrl: config.hub.hubUrl,
      token: config.hub.token,
      workDir: path.join(config.dataDir, 'datasets'),
      batchSize: 50,
      ...(limit !== undefined ? { limit } : {}),
      onProgress: (p) => bar.update(p.done, p.rows, `ok ${p.imported} failed ${p.failed}`),
    });
    bar.done();
    log.info({ dataset: result.repo, imported: result.imported, failed: result.failed, report: result.reportFile }, 'dataset imported');
  } else if (have >= products) {
    log.info({ products: have }, 'demo catalog already seeded');
  } else {
    const started = Date.now();
    log.info({ products }, 'seeding the demo catalog (generated photos, embedded by the model)');
    const catalog = await demoProducts(products);
    await seedOverHttp(catalog, {
      url,
      adminToken,
      onProgress: (done, total) => log.info({ done, total }, 'seeding'),
    });
    log.info({ products, seconds: Math.round((Date.now() - started) / 100) / 10 }, 'demo catalog seeded');
  }

  process.stdout.write(
    [
      '',
      `Storefront: ${url}/`,
      `GraphQL:    ${url}/graphql`,
      `Model:      ${info.modelId} — ${model.real ? `from ${config.embedding.modelDir ? 'EMBEDDING_MODEL_DIR' : 'the model cache'}` : 'tiny stand-in model (no SigLIP 2 model in the cache)'}`,
      ...(service.services.database.psqlUrl ? [`psql:       psql "${service.services.database.psqlUrl}"`] : []),
      `Data:       ${dataDir.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), dataDir) : dataDir}`,
      '',
      '',
    ].join('\n'),
  );
  return -1;
}

try {
  const code = await main();
  if (code >= 0) process.exit(code);
} catch (err) {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

/** The embedded database's settings as they are when nothing is set (the schema's defaults, written once there). */
function embeddedDefaults(): PgliteSettings {
  const database = loadConfig({}).database;
  if (database.kind !== 'pglite') throw new Error('without DATABASE_URL the database is the embedded one');
  return database;
}
