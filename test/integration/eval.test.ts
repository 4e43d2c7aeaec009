/**
 * Offline retrieval evaluation (src/eval/) on a demo-like catalog with real ONNX Runtime sessions (two
 * tiny generated models: A active, B built with reindex(activate: false)) and a real database (either
 * backend): the admin query evaluateModels with its bounds, identity queries and a labelled query set of
 * the catalog's own photos found first (recall@1 = 1), realistic transforms, the table and the HTML report.
 */
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATEGORIES } from '../../src/demo/synthetic-catalog.js';
import { demoProducts, seedOverHttp, type DemoProduct } from '../../src/demo/seed.js';
import { evaluateModels } from '../../src/eval/evaluate.js';
import { metricsOf } from '../../src/eval/metrics.js';
import { formatTable, renderHtml, toJson } from '../../src/eval/report.js';
import { applyTransform, TRANSFORMS } from '../../src/eval/transforms.js';
import { ADMIN_TOKEN, codes, startTestService, type TestService } from '../support/service.js';
import { JOB, REINDEX, sleep, writeCachedModel, writeModelA } from './reindex-support.js';

const EVALUATE = `query($models: [ID!], $transforms: [EvalTransform!], $limit: Int, $category: String) {
  evaluateModels(models: $models, transforms: $transforms, limit: $limit, category: $category) {
    k products queries skipped transforms seconds
    models { model active overall { queries recallAt1 recallAt5 recallAt10 mrr }
             byCategory { category metrics { queries recallAt1 mrr } } byTransform { transform metrics { queries recallAt1 recallAt10 mrr } } } } }`;

let t: TestService;
let A: { dir: string; id: string };
let B: { dir: string; id: string };
let catalog: DemoProduct[];
let ids: Map<string, string>; // sku → id

const deps = () => ({ db: t.service.services.database.db, models: t.service.services.models, search: t.service.services.search });

beforeAll(async () => {
  A = await writeModelA();
  B = await writeCachedModel();
  t = await startTestService({ REINDEX_BATCH_SIZE: '16', JOBS_POLL_INTERVAL_MS: '500' }, { model: A.dir });
  // 40 of the demo catalog's distinct looks (the demo reuses looks only past 80)
  catalog = await demoProducts(40);
  ids = await seedOverHttp(catalog, { url: t.url, adminToken: ADMIN_TOKEN, batchSize: 20 });
  const started = await t.gql(REINDEX, { model: B.id, activate: false }, { admin: true });
  expect(started.errors).toBeUndefined();
  for (let i = 0; ; i++) {
    const j = (await t.gql(JOB, { id: started.data.reindex.id }, { admin: true })).data.reindexJob;
    if (j.state === 'SUCCEEDED') break;
    if (['FAILED', 'CANCELLED'].includes(j.state) || i > 600) throw new Error(`reindex ended ${j.state}`);
    await sleep(100);
  }
}, 180_000);

afterAll(async () => {
  await t?.stop();
  for (const d of [A?.dir, B?.dir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

describe('metrics', () => {
  it('computes recall@n and MRR from ranks (null: not in the top k)', () => {
    expect(metricsOf([1, 2, null, 6])).toEqual({
      queries: 4,
      recallAt1: 0.25,
      recallAt5: 0.5,
      recallAt10: 0.75,
      mrr: (1 + 0.5 + 1 / 6) / 4,
    });
    expect(metricsOf([])).toMatchObject({ queries: 0, recallAt1: 0, mrr: 0 });
  });
});

describe('transforms', () => {
  it('each changes the photo (identity excepted) and stays a decodable image', async () => {
    const original = catalog[3]!.image;
    for (const tr of TRANSFORMS) {
      const out = await applyTransform(original, tr);
      if (tr === 'identity') expect(out).toBe(original);
      else expect(out.equals(original)).toBe(false);
      const sharp = (await import('sharp')).default;
      const m = await sharp(out).metadata();
      expect(m.width).toBeGreaterThan(0);
      if (tr === 'jpeg') expect(m.format).toBe('jpeg');
    }
  });
});

describe('evaluateModels over GraphQL', () => {
  it('requires the admin token', async () => {
    expect(codes(await t.gql(EVALUATE, { limit: 2 }))).toEqual(['UNAUTHENTICATED']);
  });

  it('finds every product from its own image first (identity: recall@1 = 1) with both models', async () => {
    const r = await t.gql(EVALUATE, { transforms: ['IDENTITY'], limit: 40 }, { admin: true });
    expect(r.errors).toBeUndefined();
    const e = r.data.evaluateModels;
    expect(e).toMatchObject({ k: 10, products: 40, queries: 40, skipped: 0, transforms: ['IDENTITY'] });
    expect(e.models.map((m: { model: string }) => m.model)).toEqual([A.id, B.id]); // default: all, active first
    expect(e.models[0].active).toBe(true);
    for (const m of e.models) {
      expect(m.overall).toEqual({ queries: 40, recallAt1: 1, recallAt5: 1, recallAt10: 1, mrr: 1 });
      const cats = m.byCategory.map((c: { category: string }) => c.category);
      expect(cats).toEqual([...new Set(catalog.map((p) => p.category))].sort());
      expect(m.byCategory.reduce((s: number, c: { metrics: { queries: number } }) => s + c.metrics.queries, 0)).toBe(40);
    }
  });

  it('reports each transform separately, for the models named, within one category', async () => {
    const category = CATEGORIES.find((c) => catalog.filter((p) => p.category === c).length >= 4)!;
    const inCategory = catalog.filter((p) => p.category === category).length;
    const r = await t.gql(EVALUATE, { models: [B.id], transforms: ['CROP', 'JPEG', 'BACKGROUND'], limit: 50, category }, { admin: true });
    expect(r.errors).toBeUndefined();
    const e = r.data.evaluateModels;
    expect(e).toMatchObject({ products: inCategory, queries: inCategory * 3, transforms: ['CROP', 'JPEG', 'BACKGROUND'] });
    const [m] = e.models;
    expect(m.model).toBe(B.id);
    expect(m.byCategory).toHaveLength(1);
    expect(m.byTransform.map((x: { transform: string }) => x.transform)).toEqual(['BACKGROUND', 'CROP', 'JPEG']);
    for (const x of [m.overall, ...m.byTransform.map((b: { metrics: unknown }) => b.metrics)]) {
      expect(x.recallAt1).toBeGreaterThanOrEqual(0);
      expect(x.recallAt1).toBeLessThanOrEqual(x.recallAt10);
      expect(x.mrr).toBeLessThanOrEqual(1);
    }
    // a light JPEG change of a flat synthetic photo is still found by the tiny model within the top 10
    expect(m.byTransform.find((x: { transform: string }) => x.transform === 'JPEG').metrics.recallAt10).toBeGreaterThan(0.5);
  });

  it('is bounded: limit, total searches, models; an unknown model is MODEL_UNAVAILABLE', async () => {
    expect(codes(await t.gql(EVALUATE, { limit: 101 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(EVALUATE, { limit: 0 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
    // the total (products × transforms × models) is checked before any image is read or embedded
    const many = await evaluateModels(deps(), { limit: 40, transforms: ['identity', 'crop'], maxSearches: 100 }).catch((e: unknown) => e);
    expect(many).toMatchObject({ code: 'BAD_USER_INPUT', details: { requested: 160, max: 100 } });
    expect(codes(await t.gql(EVALUATE, { models: ['test/no-such-model'], limit: 1 }, { admin: true }))).toEqual(['MODEL_UNAVAILABLE']);
    expect(codes(await t.gql(EVALUATE, { models: [A.id, A.id], limit: 1 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
  });

  it('runs one evaluation at a time per process', async () => {
    const both = await Promise.all([
      t.gql(EVALUATE, { transforms: ['IDENTITY', 'SCALE'], limit: 40 }, { admin: true }),
      (async () => {
        await sleep(30);
        return t.gql(EVALUATE, { limit: 1 }, { admin: true });
      })(),
    ]);
    expect(both[0].errors).toBeUndefined();
    expect(codes(both[1])).toEqual(['OVERLOADED']);
    expect(both[1].errors![0]!.extensions).toMatchObject({ stage: 'eval' });
  });
});

describe('labelled query sets and reports', () => {
  it('a labelled set of the catalog photos themselves gives recall@1 = 1; the table, JSON and HTML report show it', async () => {
    const queries = catalog
      .slice(0, 12)
      .map((p, i) =>
        i % 2
          ? { label: `${p.sku}.png`, image: p.image, sku: p.sku }
          : { label: `${p.sku}.png`, image: p.image, productId: ids.get(p.sku)! },
      );
    const report = await evaluateModels(deps(), { models: [A.id, B.id], queries });
    expect(report.sources).toEqual(['labelled']);
    expect(report.queries).toBe(12);
    for (const m of report.models) expect(m.overall).toMatchObject({ queries: 12, recallAt1: 1, mrr: 1 });

    const table = formatTable(report);
    expect(table).toContain(A.id);
    expect(table).toMatch(/all\s+12\s+100\.0\s+100\.0\s+100\.0\s+1\.000/);
    expect(JSON.parse(JSON.stringify(toJson(report)))).toMatchObject({ queries: 12, models: [{ model: A.id }, { model: B.id }] });

    const html = await renderHtml(t.service.services.database.db, report);
    expect(html).toContain('<!doctype html>');
    expect(html).not.toMatch(/src="(?!data:image\/jpeg;base64,)/); // every picture inlined
    expect(html.match(/<section class="query"/g)).toHaveLength(12);
    expect(html.match(/<li class="hit"/g)).toHaveLength(24); // each query's product, marked, for each model
    expect(html).toContain('found at 1');
  });

  it('refuses a labelled query naming no product of the catalog', async () => {
    const bad = await evaluateModels(deps(), { queries: [{ label: 'x.png', image: catalog[0]!.image, sku: 'NO-SUCH-SKU' }] }).catch(
      (e: unknown) => e,
    );
    expect(bad).toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it('leaves out (and counts) a query whose image search refuses', async () => {
    const p = catalog[5]!;
    const report = await evaluateModels(deps(), {
      queries: [
        { label: 'good.png', image: p.image, sku: p.sku },
        { label: 'notes.txt', image: Buffer.from('not an image at all'), sku: p.sku },
      ],
    });
    expect(report).toMatchObject({ queries: 1, skipped: 1 });
    expect(report.models[0]!.overall).toMatchObject({ queries: 1, recallAt1: 1 });
    expect(formatTable(report)).toContain('1 queries left out');
  });

  it('transformed catalog images with misses: the HTML shows the misses first', async () => {
    const report = await evaluateModels(deps(), { limit: 40, transforms: ['background', 'scale'] });
    expect(report.queries).toBe(80);
    const missed = (o: (typeof report.outcomes)[number]) => o.hits.some((h) => h.rank !== 1);
    // The premise: the tiny models miss some transformed photos (else there is nothing to put first).
    const misses = report.outcomes.filter(missed);
    expect(misses.length).toBeGreaterThan(0);
    expect(misses.length).toBeLessThan(report.outcomes.length - 5);
    // The misses last in the report's order, so only a page that moves them forward shows them first.
    const reordered = { ...report, outcomes: [...report.outcomes.filter((o) => !missed(o)), ...misses] };
    const html = await renderHtml(t.service.services.database.db, reordered, { maxQueries: 5 });
    const sections = html.split('<section class="query"').slice(1);
    expect(sections).toHaveLength(5);
    const shownMisses = Math.min(5, misses.length);
    for (const [i, section] of sections.entries()) {
      if (i < shownMisses) expect(section, `section ${i}`).toMatch(/not in the top 10|found at ([2-9]|10)</);
      else expect(section, `section ${i}`).not.toMatch(/not in the top 10|found at ([2-9]|10)</);
    }
  });
});
