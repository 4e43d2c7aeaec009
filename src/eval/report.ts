/**
 * Presenting an evaluation: a plain-text table (terminal), JSON (CI), and a self-contained HTML page a
 * merchant opens in a browser: every picture is inlined as a small data: JPEG, so the file can be mailed
 * or archived as is and shows the same thing offline.
 */
import sharp from 'sharp';
import { thumbnailsByIds } from '../db/eval-samples.js';
import { getProductsByIds, type Product } from '../db/products.js';
import type { Db } from '../db/types.js';
import type { EvalReport, QueryOutcome } from './evaluate.js';
import type { Metrics } from './metrics.js';

const pct = (x: number) => `${(x * 100).toFixed(1)}`;
const fix = (x: number) => x.toFixed(3);

/** One table row per model and slice (all, each category, each transform). */
export function tableRows(report: EvalReport): Array<{ model: string; slice: string; metrics: Metrics }> {
  const rows: Array<{ model: string; slice: string; metrics: Metrics }> = [];
  for (const m of report.models) {
    rows.push({ model: m.model, slice: 'all', metrics: m.overall });
    if (report.sources.length > 1)
      for (const t of m.byTransform) rows.push({ model: m.model, slice: `transform ${t.transform}`, metrics: t.metrics });
    for (const c of m.byCategory) rows.push({ model: m.model, slice: `category ${c.category}`, metrics: c.metrics });
  }
  return rows;
}

export function formatTable(report: EvalReport): string {
  const rows = tableRows(report);
  const mw = Math.max(5, ...rows.map((r) => r.model.length));
  const sw = Math.max(5, ...rows.map((r) => r.slice.length));
  const head = `${'model'.padEnd(mw)}  ${'slice'.padEnd(sw)}  ${'queries'.padStart(7)}  ${'R@1'.padStart(6)}  ${'R@5'.padStart(6)}  ${'R@10'.padStart(6)}  ${'MRR'.padStart(6)}`;
  const lines = [head, '-'.repeat(head.length)];
  let last = '';
  for (const r of rows) {
    if (last && r.model !== last) lines.push('');
    last = r.model;
    const m = r.metrics;
    lines.push(
      `${r.model.padEnd(mw)}  ${r.slice.padEnd(sw)}  ${String(m.queries).padStart(7)}  ${pct(m.recallAt1).padStart(6)}  ${pct(m.recallAt5).padStart(6)}  ${pct(m.recallAt10).padStart(6)}  ${fix(m.mrr).padStart(6)}`,
    );
  }
  lines.push(
    '',
    `${report.queries} queries on ${report.products} products (${report.sources.join(', ')}), top ${report.k}; recall in %, MRR@${report.k}; ${report.seconds.toFixed(1)} s` +
      (report.skipped ? `; ${report.skipped} queries left out (their image was refused by search: too large or undecodable)` : ''),
  );
  return lines.join('\n');
}

/** The figures without the query images and result lists: what CI compares between runs. */
export function toJson(report: EvalReport): Record<string, unknown> {
  return {
    k: report.k,
    products: report.products,
    queries: report.queries,
    skipped: report.skipped,
    sources: report.sources,
    seconds: Math.round(report.seconds * 1000) / 1000,
    models: report.models,
  };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function jpegDataUri(image: Buffer, size: number): Promise<string | null> {
  try {
    const jpeg = await sharp(image, { failOn: 'error' })
      .rotate()
      .resize(size, size, { fit: 'inside' })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 70 })
      .toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
  } catch {
    return null; // a picture that cannot be shown is left blank; the figures do not depend on it
  }
}

/** Which queries the page shows (at most `max`): those some model did not rank first, then the rest. */
export function queriesToShow(outcomes: readonly QueryOutcome[], max: number): QueryOutcome[] {
  const missed = outcomes.filter((o) => o.hits.some((h) => h.rank !== 1));
  const rest = outcomes.filter((o) => o.hits.every((h) => h.rank === 1));
  return [...missed, ...rest].slice(0, max);
}

export interface HtmlOptions {
  /** Queries shown with their results (default 60): the figures always cover every query. */
  maxQueries?: number;
  /** Results shown per model and query (default 10). */
  topShown?: number;
  title?: string;
}

export async function renderHtml(db: Db, report: EvalReport, opts: HtmlOptions = {}): Promise<string> {
  const shown = queriesToShow(report.outcomes, opts.maxQueries ?? 60);
  const topShown = opts.topShown ?? 10;
  const ids = new Set<string>();
  for (const o of shown) {
    ids.add(o.product.id);
    for (const h of o.hits) for (const t of h.top.slice(0, topShown)) ids.add(t.productId);
  }
  const [products, thumbs] = await Promise.all([getProductsByIds(db, [...ids]), thumbnailsByIds(db, [...ids])]);
  const pictures = new Map<string, string | null>();
  for (const [id, thumb] of thumbs) pictures.set(id, await jpegDataUri(thumb, 96));

  const img = (src: string | null | undefined, alt: string, cls = '') =>
    src
      ? `<img class="${cls}" src="${src}" alt="${esc(alt)}" title="${esc(alt)}" width="96" height="96">`
      : `<span class="noimg ${cls}">no image</span>`;
  const name = (p: Product | undefined, id: string) => (p ? `${p.sku} · ${p.title}` : `product ${id}`);

  const rows = tableRows(report)
    .map(
      (r) =>
        `<tr${r.slice === 'all' ? ' class="all"' : ''}><td>${esc(r.model)}</td><td>${esc(r.slice)}</td><td>${r.metrics.queries}</td><td>${pct(r.metrics.recallAt1)}</td><td>${pct(r.metrics.recallAt5)}</td><td>${pct(r.metrics.recallAt10)}</td><td>${fix(r.metrics.mrr)}</td></tr>`,
    )
    .join('\n');

  const sections: string[] = [];
  for (const o of shown) {
    const queryPic = o.preview ? await jpegDataUri(o.preview, 96) : null;
    const what = o.source === 'labelled' ? `labelled photo ${o.label ?? ''}` : `catalog image, ${o.source}`;
    const models = o.hits
      .map((h) => {
        const cells = h.top
          .slice(0, topShown)
          .map((t, i) => {
            const hit = t.productId === o.product.id;
            return `<li class="${hit ? 'hit' : ''}" data-product="${esc(t.productId)}"><span class="rank">${i + 1}</span>${img(pictures.get(t.productId), name(products.get(t.productId), t.productId))}<span class="score">${t.score.toFixed(3)}</span></li>`;
          })
          .join('');
        const verdict =
          h.rank == null ? `<span class="miss">not in the top ${report.k}</span>` : `<span class="found">found at ${h.rank}</span>`;
        return `<div class="model"><h3>${esc(h.model)} ${verdict}</h3><ol>${cells}</ol></div>`;
      })
      .join('\n');
    sections.push(`<section class="query" data-product="${esc(o.product.id)}" data-source="${esc(o.source)}">
<div class="ask">${img(queryPic, `query: ${what}`, 'q')}<div><p class="what">${esc(what)}</p><p>should find <strong>${esc(name(o.product, o.product.id))}</strong> (${esc(o.product.category)})</p>${img(pictures.get(o.product.id), `expected: ${name(o.product, o.product.id)}`, 'expected')}</div></div>
${models}
</section>`);
  }

  const title = opts.title ?? 'Retrieval evaluation';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328;background:#fafaf7}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:13px;margin:8px 0 4px;font-weight:600}
table{border-collapse:collapse;background:#fff}td,th{padding:4px 10px;border-bottom:1px solid #e5e5e0;text-align:right}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}tr.all td{font-weight:600;border-top:2px solid #c9c9c0}
.query{background:#fff;border:1px solid #e5e5e0;border-radius:8px;padding:12px;margin:12px 0}
.ask{display:flex;gap:12px;align-items:flex-start}.ask p{margin:0 0 4px}.what{color:#57606a}
img{display:block;border-radius:4px;background:#eee;object-fit:contain}img.expected{width:48px;height:48px}
ol{display:flex;flex-wrap:wrap;gap:6px;list-style:none;margin:0;padding:0}
li{position:relative;border:3px solid transparent;border-radius:6px;padding:1px}li.hit{border-color:#1a7f37}
.rank{position:absolute;top:2px;left:2px;background:#0009;color:#fff;font-size:11px;padding:0 4px;border-radius:3px}
.score{display:block;text-align:center;font-size:11px;color:#57606a}
.found{color:#1a7f37;font-weight:400}.miss{color:#cf222e;font-weight:400}
.noimg{display:inline-block;width:96px;height:96px;background:#eee;color:#888;font-size:11px;text-align:center;line-height:96px}
</style></head><body>
<h1>${esc(title)}</h1>
<p>${report.queries} queries on ${report.products} products (${esc(report.sources.join(', '))}); each model's top ${report.k}.
Recall@n: the share of queries whose product is among the first n (in %). MRR@${report.k}: mean of 1/rank (0 when not found).
The right product is framed in green.</p>
<h2>Figures</h2>
<table><thead><tr><th>model</th><th>slice</th><th>queries</th><th>R@1</th><th>R@5</th><th>R@10</th><th>MRR</th></tr></thead><tbody>
${rows}
</tbody></table>
<h2>Queries${shown.length < report.outcomes.length ? ` (${shown.length} of ${report.outcomes.length}: those some model did not rank first come first)` : ''}</h2>
${sections.join('\n')}
</body></html>
`;
}
