/**
 * Catalog intelligence on the command line (issue 25): `vps tag` (a tagging run with a progress bar, and
 * `tag accept`) and `vps duplicates` (scan, list). The same functions as the admin API.
 */
import { parseArgs } from 'node:util';
import type { Config } from '../config.js';
import { getDuplicateScan, listDuplicateGroups, scanDuplicates } from '../db/duplicates.js';
import { getActiveModel, getModel } from '../db/models.js';
import { getProductsByIds } from '../db/products.js';
import { acceptSuggestions } from '../db/tag-suggestions.js';
import { JobRunner } from '../jobs/runner.js';
import type { Logger } from '../log.js';
import { CliError, openCliContext } from './context.js';
import { followJob } from './follow-job.js';
import { ProgressBar } from './progress.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

export const TAG_USAGE = `tag <attribute> <label>... [--template "a photo of {}"] [--only-missing] [--model ID] [--detach]
       tag accept <attribute> --min-probability P

  Tags the catalog with zero-shot labels: each product's stored photo vectors are classified against the
  labels' prompts (SigLIP's per-label probability) and its best labels stored as suggestions (table
  tag_suggestions); products are not changed. <attribute>: category, or a key of the products' attributes.
  --only-missing: only products whose attribute is missing (an attributes key absent or empty; a category
  "uncategorized"). The run is a durable job (as reindex: Ctrl-C pauses it, --detach only enqueues).
  accept: copies each product's best suggestion at or above P into the product, only where the attribute
  is missing (never over a merchant's value), in one recorded transaction (table tag_acceptances).`;

export async function tagCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      template: { type: 'string' },
      'only-missing': { type: 'boolean' },
      model: { type: 'string' },
      detach: { type: 'boolean' },
      'min-probability': { type: 'string' },
    },
  });
  if (positionals[0] === 'accept') {
    const attribute = positionals[1];
    const min = Number(values['min-probability']);
    if (!attribute) throw new CliError('tag accept needs the attribute');
    if (values['min-probability'] === undefined || !(min >= 0 && min <= 1)) throw new CliError('--min-probability must be between 0 and 1');
    const ctx = await openCliContext(config, log, { loadConfiguredModel: false });
    try {
      const a = await ctx.database.db.transaction().execute((trx) => acceptSuggestions(trx, { attribute, minProbability: min }));
      out(`acceptance ${a.id}: ${a.accepted} product(s) got their ${a.attribute} (${a.target}); ${a.skipped} already had one and kept it`);
    } finally {
      await ctx.close();
    }
    return;
  }
  const [attribute, ...labels] = positionals;
  if (!attribute || labels.length === 0) throw new CliError('give the attribute and at least one label');
  const ctx = await openCliContext(config, log, { loadConfiguredModel: true });
  let runner: JobRunner | null = null;
  try {
    runner = new JobRunner(ctx.database, ctx.models, log, { ...config.jobs, work: !values.detach });
    await runner.start();
    const job = await runner.enqueueTagging({
      model: values.model ?? null,
      attribute,
      labels,
      template: values.template ?? null,
      onlyMissing: values['only-missing'] ?? false,
    });
    out(`tagging job ${job.id} queued for ${attribute} (${job.taxonomy!.labels.length} labels, model ${job.modelId})`);
    if (values.detach) return;
    await followJob(ctx.database.db, job.id, {
      label: `tag ${attribute}`,
      failedWord: 'without vector',
      resumeHint: 'a process with the model runs',
      report: (j) => {
        out(
          `job ${j.id} ${j.state}${j.error ? `: ${j.error}` : ''}; suggestions in tag_suggestions (vps tag accept ${attribute} --min-probability P)`,
        );
      },
    });
  } finally {
    await runner?.stop();
    await ctx.close();
  }
}

export const DUPLICATES_USAGE = `duplicates scan [--threshold T] [--neighbours K] [--model ID]
       duplicates list [--model ID] [--first N] [--after GROUP_ID]

  scan: finds products with near-identical photos (cosine ≥ T, default the measured DEFAULT_DUPLICATE_THRESHOLD)
  through the model's HNSW index (each photo's K nearest photos of other products, default 10), groups them,
  and replaces the model's previous scan (tables duplicate_pairs, duplicate_groups), with a progress bar.
  list: the stored groups, by group id, with their pair scores (--first, default 20; --after to page on).`;

export async function duplicatesCommand(args: string[], config: Config, log: Logger): Promise<void> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      threshold: { type: 'string' },
      neighbours: { type: 'string' },
      model: { type: 'string' },
      first: { type: 'string' },
      after: { type: 'string' },
    },
  });
  const action = positionals[0];
  if (action !== 'scan' && action !== 'list') throw new CliError('duplicates takes scan or list');
  const ctx = await openCliContext(config, log, { loadConfiguredModel: false });
  try {
    const db = ctx.database.db;
    const model = values.model ? await getModel(db, values.model) : await getActiveModel(db);
    if (!model) throw new CliError(values.model ? `no model ${values.model}` : 'no model is active');
    if (action === 'scan') {
      const bar = new ProgressBar(`duplicates ${model.id}`);
      const scan = await scanDuplicates(db, model, {
        threshold: values.threshold === undefined ? null : Number(values.threshold),
        neighbours: values.neighbours === undefined ? null : Number(values.neighbours),
        onProgress: (done, total) => bar.update(done, total, 'photos'),
      });
      bar.done();
      out(
        `${scan.products} products scanned in ${(scan.durationMs / 1000).toFixed(1)} s: ${scan.pairs} pair(s) at cosine ≥ ${scan.threshold} in ${scan.groups} group(s)`,
      );
      return;
    }
    const scan = await getDuplicateScan(db, model.id);
    if (!scan) throw new CliError(`model ${model.id} has not been scanned: run vps duplicates scan`);
    const first = Number(values.first ?? 20);
    if (!Number.isInteger(first) || first < 1) throw new CliError('--first must be a positive integer');
    const after = values.after ?? '0';
    if (!/^\d{1,18}$/.test(after)) throw new CliError('--after takes a group id');
    const page = await listDuplicateGroups(db, { modelId: model.id, afterGroup: after, first });
    const products = await getProductsByIds(db, [...new Set(page.groups.flatMap((g) => g.productIds))]);
    out(`scan of ${scan.scannedAt.toISOString()}: threshold ${scan.threshold}, ${scan.groups} group(s), ${scan.pairs} pair(s)`);
    for (const g of page.groups) {
      out(`group ${g.id} (best ${g.maxScore.toFixed(4)}): ${g.productIds.map((id) => `${id} ${products.get(id)?.sku ?? '?'}`).join(', ')}`);
      for (const p of g.pairs) out(`  ${p.a} ~ ${p.b}  ${p.score.toFixed(4)}`);
    }
    if (page.hasMore) out(`more: vps duplicates list --after ${page.groups.at(-1)!.id}`);
  } finally {
    await ctx.close();
  }
}
