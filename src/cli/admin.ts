/**
 * Admin commands for src/main.ts: import, reindex, and model list|activate|drop (model fetch|path
 * are delegated to the embedding CLI). Each one parses its own options and has a --help text in main.ts.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../config.js';
import { getModel } from '../db/models.js';
import { modelCoverage } from '../db/embeddings.js';
import { runModelCommand } from './model.js';
import { importHfDataset, isHfDataset, parseMapping } from '../jobs/hf-dataset.js';
import { importCatalog, type ImportProgress } from '../jobs/import.js';
import { JobRunner } from '../jobs/runner.js';
import type { Logger } from '../log.js';
import { syncCategoryIndexes } from '../models/category-indexes.js';
import { imageLimitsOf } from '../services.js';
import { CliError, openCliContext } from './context.js';
import { followJob } from './follow-job.js';
import { ProgressBar } from './progress.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

export const IMPORT_USAGE = `import <catalog.jsonl|catalog.csv|hf://datasets/OWNER/NAME> [--images-dir DIR] [--report FILE] [--batch N] [--restart]
       [--map field=column,...] [--split NAME] [--config NAME] [--limit N]   (hf:// datasets)

  Imports products through the same path as the upsertProducts mutation (validation, images, thumbnails,
  vectors of the active model and of any model being built), one transaction per batch (default 50 rows).
  image: an http(s) URL or a file path (relative to --images-dir, default the catalog's folder).
  Rows that fail go to the report (default <file>.errors.jsonl) and the import goes on. Interrupted, a
  re-run resumes after the last committed row (checkpoint <file>.import-state.json); --restart ignores it.
  With the embedded database, stop the service first (or use DATABASE_URL).
  hf://datasets/OWNER/NAME: a Hugging Face image dataset's Parquet files (HF_ENDPOINT, HF_TOKEN), kept in
  DATA_DIR/datasets/ with the converted catalog; --map names the columns of title, category, sku, … (default:
  sku=id, title=productDisplayName, category=articleType for ceyda/fashion-products-small; others: attributes).`;

export async function importCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'images-dir': { type: 'string' },
      report: { type: 'string' },
      batch: { type: 'string' },
      restart: { type: 'boolean' },
      map: { type: 'string' },
      split: { type: 'string' },
      config: { type: 'string' },
      limit: { type: 'string' },
    },
  });
  const file = positionals[0];
  if (!file) throw new CliError('a catalog file is required');
  const batch = Number(values.batch ?? 50);
  if (!Number.isInteger(batch) || batch < 1 || batch > 500) throw new CliError('--batch must be between 1 and 500');
  const ctx = await openCliContext(config, log, { loadConfiguredModel: true });
  try {
    const active = await ctx.models.activeModel();
    if (active && !ctx.models.embedder(active.id)) {
      throw new CliError(
        `The active model ${active.id} is not loaded (set EMBEDDING_MODEL_DIR or fetch it): imported products would have no vector for search`,
      );
    }
    const bar = new ProgressBar('import');
    const common = {
      batchSize: batch,
      restart: values.restart ?? false,
      ...(values.report ? { reportFile: values.report } : {}),
      onProgress: (p: ImportProgress) => bar.update(p.done, p.rows, `ok ${p.imported} failed ${p.failed}`),
    };
    const limit = values.limit === undefined ? undefined : Number(values.limit);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new CliError('--limit must be a positive integer');
    const result = isHfDataset(file)
      ? await importHfDataset(ctx.ingest, {
          ...common,
          source: file,
          hubUrl: config.hub.hubUrl,
          token: config.hub.token,
          workDir: path.join(config.dataDir, 'datasets'),
          mapping: parseMapping(values.map),
          ...(values.split ? { split: values.split } : {}),
          ...(values.config ? { config: values.config } : {}),
          ...(limit !== undefined ? { limit } : {}),
          onDownload: (() => {
            const dl = new ProgressBar('dataset download', { unit: 'MiB', scale: 1048576 });
            return (p: { file: string; done: number; total: number }) => dl.update(p.done, p.total, p.file);
          })(),
        })
      : await importCatalog(ctx.ingest, {
          ...common,
          file,
          ...(values['images-dir'] ? { imagesDir: values['images-dir'] } : {}),
        });
    bar.update(result.done, result.rows, `ok ${result.imported} failed ${result.failed}`, true);
    bar.done();
    if (result.resumedAfterLine !== null) out(`resumed after line ${result.resumedAfterLine} (${result.skipped} rows already imported)`);
    out(
      `imported ${result.imported}, failed ${result.failed} of ${result.rows} rows${result.failed ? `; errors in ${result.reportFile}` : ''}`,
    );
  } finally {
    await ctx.close();
  }
}

export const REINDEX_USAGE = `reindex [--model ID | --model-dir DIR] [--only-missing] [--no-activate] [--detach]

  Re-embeds the catalog with a model (default: the active one) on the durable job queue, then makes it the
  active model once every product has a vector and its index is built (unless --no-activate). The job runs
  in this process with a progress bar; Ctrl-C pauses it (a later run or a service with the model resumes it).
  --model ID: a registered/loaded model or a hub repository in the model cache (vps model fetch ID).
  --model-dir DIR: load the model from a directory. --detach: only enqueue (a running service with the
  model loaded works it) and print the job id. Search keeps serving from the current model meanwhile.`;

export async function reindexCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const { values } = parseArgs({
    args,
    allowPositionals: false,
    options: {
      model: { type: 'string' },
      'model-dir': { type: 'string' },
      'only-missing': { type: 'boolean' },
      'no-activate': { type: 'boolean' },
      detach: { type: 'boolean' },
    },
  });
  if (values.model && values['model-dir']) throw new CliError('give --model or --model-dir, not both');
  const ctx = await openCliContext(config, log, { loadConfiguredModel: true });
  let runner: JobRunner | null = null;
  try {
    let model = values.model ?? null;
    if (values['model-dir']) {
      model = (await ctx.models.addDir(path.resolve(values['model-dir']))).id;
    }
    runner = new JobRunner(ctx.database, ctx.models, log, {
      ...config.jobs,
      work: !values.detach,
      imageLimits: imageLimitsOf(config),
      categoryIndexes: config.search.categoryIndexes,
    });
    await runner.start();
    const job = await runner.enqueueReindex({ model, onlyMissing: values['only-missing'] ?? false, activate: !values['no-activate'] });
    out(`reindex job ${job.id} queued for model ${job.modelId}`);
    if (values.detach) return;
    await followJob(ctx.database.db, job.id, {
      label: `reindex ${job.modelId} (photos)`,
      failedWord: 'failed',
      resumeHint: 'a process with the model runs (vps serve, or vps reindex again)',
      report: async (j) => {
        out(`job ${j.id} ${j.state}${j.activated ? `: ${j.modelId} is now the active model` : ''}${j.error ? `: ${j.error}` : ''}`);
        const c = await modelCoverage(ctx.database.db, j.modelId);
        out(`  ${j.modelId}: ${c.productsEmbedded}/${c.products} products, ${c.photosEmbedded}/${c.photos} photos, ${c.vectors} vectors`);
        for (const e of j.errors.slice(0, 10)) out(`  product ${e.productId} (${e.sku ?? '?'}): ${e.message}`);
      },
    });
  } finally {
    await runner?.stop();
    await ctx.close();
  }
}

export const MODEL_USAGE = `model <list|activate ID|drop ID|fetch [repo]|path [repo]>

  list               the model registry: status, active, vectors stored
  activate ID        make ID the active model (roll back a switch); refused while a product lacks its vector
  drop ID            delete a non-active model's vectors and index (keeps the registry row, status retired)
  categories ID      build or drop ID's per-category HNSW indexes to match its vectors (a reindex does it
                     too; run it after imports that grow or shrink categories; SEARCH_CATEGORY_INDEX_*)
  fetch [repo]       download a model from the Hugging Face Hub into the Hugging Face hub cache (--variant, --revision, --cache-dir)
  path [repo]        print where a model lives (its hub cache snapshot, or its former .cache/models entry)

Generated stand-in models (tests, demo, benchmarks): npm run model:generate -- tiny|b16 [dir]`;

export async function modelCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const [sub, id] = args;
  if (sub !== 'list' && sub !== 'activate' && sub !== 'drop' && sub !== 'categories') {
    const code = await runModelCommand(args);
    if (code !== 0) throw new CliError(`model ${args.join(' ')} failed`);
    return;
  }
  if (sub !== 'list' && !id) throw new CliError(`model ${sub} needs a model id`);
  const ctx = await openCliContext(config, log, { loadConfiguredModel: false });
  try {
    if (sub === 'list') {
      const rows = await ctx.models.list();
      if (!rows.length) out('no models registered');
      out(`${'model'.padEnd(48)} ${'dim'.padStart(5)} ${'status'.padEnd(9)} ${'active'.padEnd(6)} ${'vectors'.padStart(9)}`);
      for (const m of rows)
        out(
          `${m.id.padEnd(48)} ${String(m.dimension).padStart(5)} ${m.status.padEnd(9)} ${(m.isActive ? 'yes' : '').padEnd(6)} ${String(m.vectors).padStart(9)}`,
        );
    } else if (sub === 'activate') {
      const m = await ctx.models.activate(id!, { requireLoaded: false });
      out(`${m.id} is the active model`);
    } else if (sub === 'categories') {
      const model = await getModel(ctx.database.db, id!);
      if (!model) throw new CliError(`model ${id} is not registered`);
      const r = await syncCategoryIndexes(ctx.database.db, model, ctx.database.kind, config.search.categoryIndexes);
      const names = (xs: string[]) => (xs.length ? xs.map((c) => JSON.stringify(c)).join(', ') : 'none');
      out(`category indexes of ${model.id}: built ${names(r.built)}; dropped ${names(r.dropped)}; kept ${names(r.kept)}`);
    } else {
      const n = await ctx.models.dropEmbeddings(id!);
      out(`dropped ${n} vectors of ${id}`);
    }
  } finally {
    await ctx.close();
  }
}
