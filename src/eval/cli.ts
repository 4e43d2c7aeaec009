/** `vps eval`: the offline evaluation from the command line (table on stdout, HTML report, --json for CI). */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CliError, openCliContext } from '../cli/context.js';
import { ProgressBar } from '../cli/progress.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { evaluateModels, type LabelledQuery } from './evaluate.js';
import { evaluateHeldOut, formatHeldOutTable } from './held-out.js';
import { formatTable, renderHtml, toJson } from './report.js';
import { DEFAULT_TRANSFORMS, isTransform, TRANSFORMS, type Transform } from './transforms.js';

export const EVAL_USAGE = `eval [--model ID]... [--model-dir DIR]... [--transforms LIST] [--limit N] [--category NAME]
       [--queries FILE.jsonl] [--held-out] [--html FILE] [--no-html] [--json] [--concurrency N] [--show N]

  Offline retrieval evaluation of one or more models on the catalog: each query is an image whose right
  answer is known, asked of every model through the search path shoppers use; the rank at which each model
  finds the product gives recall@1/5/10 and MRR@10, overall, per transform and per category.
  Queries: the catalog's own images (a sample of --limit products, default 200, spread over the catalog)
  under --transforms (comma-separated, default ${DEFAULT_TRANSFORMS.join(',')}; also identity), or a
  labelled query set --queries FILE.jsonl of {"image": "path", "productId": "…"} (or "sku") per line, image
  paths relative to the file.
  Models: ready, loaded ones (--model ID, repeatable: registered ids, loaded from the model cache; or
  --model-dir DIR); default every ready model in the cache, the active one first.
  --held-out: a catalog of several photos per product: each sampled product's last photo is held out of
  the catalog and is the query; the product is ranked by its best other photo and by its first photo only
  (what one photo per product could answer), exactly, side by side (no transforms, no HTML report).
  Output: the table on stdout; the HTML report (thumbnails inlined) to --html FILE (default
  eval-report.html; --no-html: none); --json prints the figures as JSON instead of the table.
  With the embedded database, stop the service first (or use DATABASE_URL); the admin query
  evaluateModels gives the same figures from a running service.`;

/** Reads a labelled query set: one {"image", "productId" | "sku"} object per line; images relative to the file. */
export async function readLabelledQueries(file: string, maxImageBytes: number): Promise<LabelledQuery[]> {
  const text = await fs.readFile(file, 'utf8');
  const dir = path.dirname(path.resolve(file));
  const out: LabelledQuery[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new CliError(`${file}:${i + 1}: not JSON`);
    }
    const r = (row ?? {}) as Record<string, unknown>;
    const productId = typeof r.productId === 'string' || typeof r.productId === 'number' ? String(r.productId) : undefined;
    const sku = typeof r.sku === 'string' ? r.sku : undefined;
    if (typeof r.image !== 'string' || (!productId && !sku))
      throw new CliError(`${file}:${i + 1}: needs "image" and "productId" (or "sku")`);
    const imagePath = path.resolve(dir, r.image);
    const stat = await fs.stat(imagePath).catch(() => null);
    if (!stat?.isFile()) throw new CliError(`${file}:${i + 1}: no image file ${r.image}`);
    if (stat.size > maxImageBytes) throw new CliError(`${file}:${i + 1}: ${r.image} is over IMAGE_MAX_BYTES`);
    out.push({ label: r.image, image: await fs.readFile(imagePath), ...(productId ? { productId } : {}), ...(sku ? { sku } : {}) });
  }
  if (!out.length) throw new CliError(`${file}: no queries`);
  return out;
}

export async function evalCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const { values } = parseArgs({
    args,
    allowPositionals: false,
    options: {
      model: { type: 'string', multiple: true },
      'model-dir': { type: 'string', multiple: true },
      transforms: { type: 'string' },
      limit: { type: 'string' },
      category: { type: 'string' },
      queries: { type: 'string' },
      'held-out': { type: 'boolean' },
      html: { type: 'string' },
      'no-html': { type: 'boolean' },
      json: { type: 'boolean' },
      concurrency: { type: 'string' },
      show: { type: 'string' },
    },
  });
  const int = (name: string, v: string | undefined, dflt: number, max: number) => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new CliError(`--${name} must be an integer from 1 to ${max}`);
    return n;
  };
  const limit = int('limit', values.limit, 200, 100_000);
  const concurrency = int('concurrency', values.concurrency, 4, 64);
  const show = int('show', values.show, 60, 10_000);
  let transforms: Transform[] | null = null;
  if (values.transforms) {
    const names = values.transforms
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean);
    const bad = names.filter((n) => !isTransform(n));
    if (bad.length || !names.length)
      throw new CliError(`unknown transform ${bad.join(', ') || '(none)'}: choose from ${TRANSFORMS.join(', ')}`);
    transforms = names as Transform[];
  }
  const heldOut = values['held-out'] ?? false;
  if (heldOut && (values.queries || values.transforms))
    throw new CliError('--held-out makes its own queries: give no --queries or --transforms');
  const queries = values.queries ? await readLabelledQueries(values.queries, config.images.maxBytes) : null;

  const ctx = await openCliContext(config, log, { loadConfiguredModel: true });
  try {
    const named = [...(values.model ?? [])];
    for (const dir of values['model-dir'] ?? []) named.push((await ctx.models.addDir(path.resolve(dir))).id);
    if (named.length) {
      for (const id of values.model ?? []) await ctx.models.resolve(id); // loaded from the model cache when needed
    } else {
      await ctx.models.loadServable(); // every ready model in the cache
    }
    const bar = values.json ? null : new ProgressBar('eval');
    if (heldOut) {
      const report = await evaluateHeldOut(
        { db: ctx.database.db, models: ctx.models, search: ctx.services.search },
        {
          models: named.length ? named : null,
          limit,
          category: values.category ?? null,
          concurrency,
          onProgress: (done, total) => bar?.update(done, total),
        },
      );
      bar?.done();
      const { outcomes: _outcomes, ...figures } = report;
      process.stdout.write(values.json ? `${JSON.stringify(figures, null, 2)}\n` : `\n${formatHeldOutTable(report)}\n`);
      return;
    }
    const report = await evaluateModels(
      { db: ctx.database.db, models: ctx.models, search: ctx.services.search },
      {
        models: named.length ? named : null,
        transforms,
        limit,
        category: values.category ?? null,
        queries,
        concurrency,
        onProgress: (done, total) => bar?.update(done, total),
      },
    );
    bar?.done();
    const htmlFile = values['no-html'] ? null : path.resolve(values.html ?? 'eval-report.html');
    if (htmlFile) await fs.writeFile(htmlFile, await renderHtml(ctx.database.db, report, { maxQueries: show }));
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ...toJson(report), html: htmlFile }, null, 2)}\n`);
    } else {
      process.stdout.write(`\n${formatTable(report)}\n`);
      if (htmlFile) {
        const rel = path.relative(process.cwd(), htmlFile);
        process.stdout.write(`HTML report: ${rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : htmlFile}\n`);
      }
    }
  } finally {
    await ctx.close();
  }
}
