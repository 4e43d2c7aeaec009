/**
 * Several models served at once, over HTTP with real ONNX Runtime sessions and a real database (either
 * backend): model A is active, model B is built with reindex(activate: false) and answers queries too;
 * compareModels runs one query against both and reports their overlap; ingest embeds for B only while it
 * is marked keep-current; a model that is not ready or not loaded is MODEL_UNAVAILABLE.
 */
import fs from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { registerModel } from '../../src/models/lifecycle.js';
import { codes, startTestService, type TestService } from '../support/service.js';
import { catalogInputs, JOB, MODELS, REINDEX, sleep, UPSERT, writeCachedModel, writeModelA } from './reindex-support.js';

let t: TestService;
let A: { dir: string; id: string };
let B: { dir: string; id: string };
const ids = new Map<string, string>(); // sku → id

const COMPARE = `query($models: [ID!], $image: ImageInput, $text: String, $filter: ProductFilter, $k: Int) {
  compareModels(models: $models, image: $image, text: $text, filter: $filter, k: $k) {
    k results { model dimension active matches { score product { id category } } }
    overlap { models shared jaccard rankCorrelation } sharedByAll } }`;
const SIMILAR = `query($image: ImageInput!, $k: Int, $model: ID) { similarProducts(image: $image, k: $k, model: $model) { score product { id } } }`;
const TEXT = `query($text: String!, $k: Int, $model: ID) { searchProducts(text: $text, k: $k, model: $model) { score product { id } } }`;
const KEEP = `mutation($model: String!, $keep: Boolean!) { setModelKeepCurrent(model: $model, keep: $keep) { id keepCurrent vectors } }`;

async function waitFor(id: string) {
  for (let i = 0; i < 600; i++) {
    const j = (await t.gql(JOB, { id }, { admin: true })).data.reindexJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(j.state)) return j;
    await sleep(100);
  }
  throw new Error('job did not finish');
}

const vectorsOf = async (id: string): Promise<number> =>
  ((await t.gql(MODELS, {}, { admin: true })).data.models as Array<{ id: string; vectors: number }>).find((m) => m.id === id)!.vectors;

beforeAll(async () => {
  A = await writeModelA();
  B = await writeCachedModel();
  t = await startTestService({ REINDEX_BATCH_SIZE: '8', JOBS_POLL_INTERVAL_MS: '500' }, { model: A.dir });
  const res = await t.gql(UPSERT, { p: await catalogInputs(24, 9, 'C') }, { admin: true });
  expect(res.errors).toBeUndefined();
  for (const r of res.data.upsertProducts) ids.set(r.sku, r.id);
  const started = await t.gql(REINDEX, { model: B.id, activate: false }, { admin: true });
  expect(started.errors).toBeUndefined();
  expect(await waitFor(started.data.reindex.id)).toMatchObject({ state: 'SUCCEEDED', activated: false });
}, 180_000);
afterAll(async () => {
  await t?.stop();
  for (const d of [A?.dir, B?.dir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

it('answers similarProducts and searchProducts with a named ready model, the active one by default', async () => {
  const product = ids.get('C-00003')!;
  const byB = await t.gql(SIMILAR, { image: { productId: product }, k: 5, model: B.id });
  expect(byB.errors).toBeUndefined();
  expect(byB.data.similarProducts).toHaveLength(5);
  expect(byB.data.similarProducts[0].product.id).toBe(product);
  const byDefault = await t.gql(SIMILAR, { image: { productId: product }, k: 5 });
  const byA = await t.gql(SIMILAR, { image: { productId: product }, k: 5, model: A.id });
  expect(byDefault.data.similarProducts).toEqual(byA.data.similarProducts);
  // two models with other weights score differently
  expect(byB.data.similarProducts.map((m: { score: number }) => m.score)).not.toEqual(
    byA.data.similarProducts.map((m: { score: number }) => m.score),
  );
  const text = await t.gql(TEXT, { text: 'red bag', k: 3, model: B.id });
  expect(text.errors).toBeUndefined();
  expect(text.data.searchProducts).toHaveLength(3);
});

it('refuses a model that is unknown, not loaded or not ready with MODEL_UNAVAILABLE', async () => {
  const db = t.service.services.database.db;
  await registerModel(db, { id: 'test/registered-only', source: 'test', variant: null, dimension: 16 });
  for (const model of ['test/no-such-model', 'test/registered-only']) {
    const r = await t.gql(TEXT, { text: 'bag', model });
    expect(codes(r)).toEqual(['MODEL_UNAVAILABLE']);
    expect(r.errors![0]!.extensions).toMatchObject({ model });
    const c = await t.gql(COMPARE, { models: [A.id, model], text: 'bag' });
    expect(codes(c)).toEqual(['MODEL_UNAVAILABLE']);
  }
  expect(codes(await t.gql(TEXT, { text: 'bag', model: 'test/registered-only' }))).toEqual(['MODEL_UNAVAILABLE']);
});

it('compares two models on one image query: per model k ranked matches, and their overlap', async () => {
  const product = ids.get('C-00007')!;
  const r = await t.gql(COMPARE, { models: [A.id, B.id], image: { productId: product }, k: 6 });
  expect(r.errors).toBeUndefined();
  const c = r.data.compareModels;
  expect(c.k).toBe(6);
  expect(c.results.map((x: { model: string }) => x.model)).toEqual([A.id, B.id]);
  expect(c.results[0]).toMatchObject({ active: true, dimension: 32 });
  expect(c.results[1]).toMatchObject({ active: false, dimension: 48 });
  // each model's list is what similarProducts gives for that model
  for (const res of c.results) {
    expect(res.matches).toHaveLength(6);
    const alone = await t.gql(SIMILAR, { image: { productId: product }, k: 6, model: res.model });
    expect(res.matches.map((m: { product: { id: string } }) => m.product.id)).toEqual(
      alone.data.similarProducts.map((m: { product: { id: string } }) => m.product.id),
    );
  }
  const [ov] = c.overlap;
  expect(c.overlap).toHaveLength(1);
  expect(ov.models).toEqual([A.id, B.id]);
  const a = c.results[0].matches.map((m: { product: { id: string } }) => m.product.id) as string[];
  const bList = c.results[1].matches.map((m: { product: { id: string } }) => m.product.id) as string[];
  const b = new Set(bList);
  const shared = a.filter((x) => b.has(x));
  expect(ov.shared).toEqual(shared);
  expect(shared[0]).toBe(product); // both rank the query product first
  expect(ov.jaccard).toBeCloseTo(shared.length / (12 - shared.length));
  // Spearman's rho of the shared products, worked out here as the Pearson correlation of their ranks in
  // the two lists (the textbook definition, not the d² shortcut compare.ts uses).
  expect(shared.length).toBeGreaterThanOrEqual(3); // the premise: enough shared products to rank
  const xs = shared.map((_, i) => i);
  const ys = shared.map((x) =>
    shared
      .slice()
      .sort((p, q) => bList.indexOf(p) - bList.indexOf(q))
      .indexOf(x),
  );
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const [mx, my] = [mean(xs), mean(ys)];
  const cov = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0);
  const sd = (v: number[], m: number) => Math.sqrt(v.reduce((s, x) => s + (x - m) ** 2, 0));
  expect(ov.rankCorrelation).toBeCloseTo(cov / (sd(xs, mx) * sd(ys, my)), 9);
  expect(c.sharedByAll).toEqual(shared);
});

it('compares on a text query with filters; without models it takes every ready loaded model, the active first', async () => {
  const r = await t.gql(COMPARE, { text: 'blue shoes', filter: { category: 'shoes' }, k: 3 });
  expect(r.errors).toBeUndefined();
  const c = r.data.compareModels;
  expect(c.results.map((x: { model: string }) => x.model)).toEqual([A.id, B.id]);
  for (const res of c.results) for (const m of res.matches) expect(m.product.category).toBe('shoes');
});

it('refuses a compare with one model, duplicates, or not exactly one of image/text', async () => {
  expect(codes(await t.gql(COMPARE, { models: [A.id], text: 'bag' }))).toEqual(['BAD_USER_INPUT']);
  expect(codes(await t.gql(COMPARE, { models: [A.id, A.id], text: 'bag' }))).toEqual(['BAD_USER_INPUT']);
  expect(codes(await t.gql(COMPARE, { models: [A.id, B.id] }))).toEqual(['BAD_USER_INPUT']);
  expect(codes(await t.gql(COMPARE, { models: [A.id, B.id], text: 'bag', image: { productId: ids.get('C-00001') } }))).toEqual([
    'BAD_USER_INPUT',
  ]);
});

it('ingest embeds for a ready model only while it is marked keep-current', async () => {
  const before = await vectorsOf(B.id);
  const more = await catalogInputs(2, 31, 'K');
  expect((await t.gql(UPSERT, { p: [more[0]] }, { admin: true })).errors).toBeUndefined();
  expect(await vectorsOf(B.id)).toBe(before); // ready, not kept current: A only

  const kept = await t.gql(KEEP, { model: B.id, keep: true }, { admin: true });
  expect(kept.errors).toBeUndefined();
  expect(kept.data.setModelKeepCurrent).toMatchObject({ id: B.id, keepCurrent: true });
  expect((await t.gql(UPSERT, { p: [more[1]] }, { admin: true })).errors).toBeUndefined();
  expect(await vectorsOf(B.id)).toBe(before + 1);
  expect(codes(await t.gql(KEEP, { model: B.id, keep: false }))).toEqual(['UNAUTHENTICATED']);
  expect(codes(await t.gql(KEEP, { model: 'test/nope', keep: true }, { admin: true }))).toEqual(['NOT_FOUND']);
});
