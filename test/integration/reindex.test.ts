/**
 * Reindex and model lifecycle over GraphQL, with the real pg-boss queue on this run's database
 * (PostgreSQL with TEST_DATABASE_URL, else the embedded PGlite): a catalog moves from model A to model B
 * under query load and concurrent writes with no empty, short or mixed result; rollback; cancel; drop;
 * bad arguments.
 *
 * @backend the job queue (pg-boss) and the switch, on the single session too
 */
import fs from 'node:fs/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCategoryIndexes } from '../../src/models/category-indexes.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { codes, startTestService, type TestService } from '../support/service.js';
import { catalogInputs, JOB, MODELS, REINDEX, SIMILAR, sleep, UPSERT, writeCachedModel, writeModelA } from './reindex-support.js';

const N = 64;
const K = 10;
const CATEGORIES = ['bags', 'shoes', 'hats', 'lamps', 'mugs', 'scarves'];
const FILTERED = `query($image: ImageInput!, $k: Int, $f: ProductFilter) { similarProducts(image: $image, k: $k, filter: $f) { score product { id } } }`;

let t: TestService;
let A: { dir: string; id: string };
let B: { dir: string; id: string };
const cleanup: string[] = [];
const ids: string[] = [];

beforeAll(async () => {
  A = await writeModelA();
  B = await writeCachedModel();
  cleanup.push(A.dir, B.dir);
  t = await startTestService(
    {
      REINDEX_BATCH_SIZE: '4',
      REINDEX_THROTTLE_MS: '120',
      JOBS_POLL_INTERVAL_MS: '500',
      // Small enough that a reindex of this catalog builds per-category indexes (models/category-indexes.ts).
      SEARCH_CATEGORY_INDEX_MIN_VECTORS: '6',
      SEARCH_CATEGORY_INDEX_MAX_SHARE: '0.5',
    },
    { model: A.dir },
  );
  const inputs = await catalogInputs(N);
  for (let i = 0; i < N; i += 32) {
    const res = await t.gql(UPSERT, { p: inputs.slice(i, i + 32) }, { admin: true });
    expect(res.errors).toBeUndefined();
    ids.push(...res.data.upsertProducts.map((p: { id: string }) => p.id));
  }
}, 180_000);
afterAll(async () => {
  await t?.stop();
  for (const d of cleanup) await fs.rm(d, { recursive: true, force: true });
});

const db = () => t.service.services.database.db;

async function waitFor(id: string, states = ['SUCCEEDED', 'FAILED', 'CANCELLED'], timeoutMs = 90_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await t.gql(JOB, { id }, { admin: true });
    expect(r.errors).toBeUndefined();
    if (states.includes(r.data.reindexJob.state)) return r.data.reindexJob;
    if (Date.now() > until) throw new Error(`job ${id} still ${r.data.reindexJob.state}`);
    await sleep(100);
  }
}

/** Cosine similarity of two stored vectors per model: map model → product → vector. */
async function vectorsByModel(): Promise<Map<string, Map<string, number[]>>> {
  const rows = await sql<{ model_id: string; product_id: string; v: string }>`
    SELECT model_id, product_id, embedding::vector::text AS v FROM product_embeddings`.execute(db());
  const out = new Map<string, Map<string, number[]>>();
  for (const r of rows.rows) {
    if (!out.has(r.model_id)) out.set(r.model_id, new Map());
    out.get(r.model_id)!.set(String(r.product_id), JSON.parse(r.v));
  }
  return out;
}
const cosine = (a: number[], b: number[]) =>
  a.reduce((s, x, i) => s + x * b[i]!, 0) / Math.sqrt(a.reduce((s, x) => s + x * x, 0) * b.reduce((s, x) => s + x * x, 0));

async function countExact(modelId: string) {
  const r = await sql<{ products: string; vectors: string; current: string }>`
    SELECT (SELECT count(*) FROM product_images) AS products,
           (SELECT count(*) FROM product_embeddings WHERE model_id = ${modelId}) AS vectors,
           (SELECT count(*) FROM product_embeddings e JOIN product_images pi ON pi.product_id = e.product_id AND pi.sha256 = e.image_sha256
             WHERE e.model_id = ${modelId}) AS current`.execute(db());
  return { products: Number(r.rows[0]!.products), vectors: Number(r.rows[0]!.vectors), current: Number(r.rows[0]!.current) };
}

describe('reindex: bad arguments', () => {
  it('needs the admin token', async () => {
    expect(codes(await t.gql(REINDEX, { model: B.id }))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await t.gql(MODELS))).toEqual(['UNAUTHENTICATED']);
  });

  it('refuses an unknown model, a dimension mismatch, unknown jobs, dropping the active model', async () => {
    expect(codes(await t.gql(REINDEX, { model: 'vps/no-such-model' }, { admin: true }))).toEqual(['NOT_FOUND']);
    // registered as 16-d, but the files in the cache produce 48-d vectors
    const odd = await writeCachedModel(48, 33);
    cleanup.push(odd.dir);
    await registerModel(db(), { id: odd.id, source: 'test', variant: null, dimension: 16 });
    const mismatch = await t.gql(REINDEX, { model: odd.id }, { admin: true });
    expect(codes(mismatch)).toEqual(['CONFLICT']);
    expect(mismatch.errors![0]!.message).toMatch(/dimension 16/);
    expect(codes(await t.gql(`mutation { cancelReindex(id: "999999") { id } }`, {}, { admin: true }))).toEqual(['NOT_FOUND']);
    expect((await t.gql(JOB, { id: '999999' }, { admin: true })).data.reindexJob).toBeNull();
    expect(codes(await t.gql(`mutation($m: String!) { dropModelEmbeddings(model: $m) }`, { m: A.id }, { admin: true }))).toEqual([
      'CONFLICT',
    ]);
    expect(codes(await t.gql(`mutation { activateModel(model: "vps/none") { id } }`, {}, { admin: true }))).toEqual(['NOT_FOUND']);
    expect(codes(await t.gql(`{ reindexJobs(first: 0) { id } }`, {}, { admin: true }))).toEqual(['BAD_USER_INPUT']);
  });
});

describe('reindex: zero-downtime switch', () => {
  it('moves the catalog from A to B under query load and writes: no empty, short or mixed result', async () => {
    const started = await t.gql(REINDEX, { model: B.id }, { admin: true });
    expect(started.errors).toBeUndefined();
    const job = started.data.reindex;
    expect(job).toMatchObject({ model: B.id, state: 'QUEUED' });
    // a second reindex of the same model while one is open is refused
    const again = await t.gql(REINDEX, { model: B.id }, { admin: true });
    expect(codes(again)).toEqual(['CONFLICT']);

    const observed: Array<{ probe: string; results: Array<{ id: string; score: number }> }> = [];
    let done = false;
    let sawRunning = false;
    const probes = ids.filter((_, i) => i % 8 === 0);
    const queries = (async () => {
      let i = 0;
      while (!done) {
        const probe = probes[i++ % probes.length]!;
        const r = await t.gql(FILTERED, { image: { productId: probe }, k: K, f: { categories: CATEGORIES } });
        expect(r.errors).toBeUndefined();
        observed.push({ probe, results: r.data.similarProducts.map((m: any) => ({ id: m.product.id, score: m.score })) });
      }
    })();
    // writes during the job: new products (another category, so the probes' rankings stay comparable)
    const extra = (await catalogInputs(12, 9, 'NEW')).map((p) => ({ ...p, category: 'new-arrivals' }));
    const writes = (async () => {
      for (let i = 0; i < extra.length; i += 3) {
        const r = await t.gql(UPSERT, { p: extra.slice(i, i + 3) }, { admin: true });
        expect(r.errors).toBeUndefined();
        const st = (await t.gql(JOB, { id: job.id }, { admin: true })).data.reindexJob;
        if (st.state === 'RUNNING') {
          sawRunning = true;
          expect(st.total).toBeGreaterThan(0);
        }
        await sleep(150);
      }
    })();
    const final = await waitFor(job.id);
    await writes;
    // a few more queries after the switch
    await sleep(300);
    done = true;
    await queries;

    expect(final).toMatchObject({ state: 'SUCCEEDED', activated: true, failed: 0, error: null });
    expect(sawRunning).toBe(true);
    const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
    expect(models.find((m: any) => m.id === B.id)).toMatchObject({ active: true, status: 'READY', loaded: true, vectors: N + 12 });
    expect(models.find((m: any) => m.id === A.id)).toMatchObject({ active: false, status: 'RETIRED' });

    // exactly one current vector of B per product, products written during the job included
    expect(await countExact(B.id)).toEqual({ products: N + 12, vectors: N + 12, current: N + 12 });

    // the job built B's category indexes after its own, for categories in the configured range
    const indexed = await listCategoryIndexes(db(), B.id);
    expect(indexed.length).toBeGreaterThan(0);
    const sizes = await sql<{ category: string; n: string }>`
      SELECT category, count(*)::text AS n FROM product_embeddings WHERE model_id = ${B.id} GROUP BY category`.execute(db());
    const size = new Map(sizes.rows.map((r) => [r.category, Number(r.n)]));
    for (const i of indexed) {
      expect(i.valid).toBe(true);
      expect(size.get(i.category)).toBeGreaterThanOrEqual(6);
    }

    // every observed result: k results, all scored by one model's vectors (A before the switch, B after)
    const vectors = await vectorsByModel();
    const fits = (model: string, probe: string, r: { id: string; score: number }) => {
      const m = vectors.get(model)!;
      return m.has(r.id) && Math.abs(cosine(m.get(probe)!, m.get(r.id)!) - r.score) < 2e-3;
    };
    let byA = 0;
    let byB = 0;
    for (const o of observed) {
      expect(o.results).toHaveLength(K);
      const allA = o.results.every((r) => fits(A.id, o.probe, r));
      const allB = o.results.every((r) => fits(B.id, o.probe, r));
      expect(allA || allB).toBe(true);
      if (allA && !allB) byA++;
      if (allB && !allA) byB++;
    }
    expect(byA).toBeGreaterThan(0);
    expect(byB).toBeGreaterThan(0);
    expect(byA + byB).toBe(observed.length);
  }, 120_000);

  it('rolls back with activateModel, and refuses it while the old model lacks vectors', async () => {
    const back = await t.gql(`mutation($m: String!) { activateModel(model: $m) { id active status } }`, { m: A.id }, { admin: true });
    expect(back.errors).toBeUndefined();
    expect(back.data.activateModel).toEqual({ id: A.id, active: true, status: 'READY' });
    const r = await t.gql(SIMILAR, { image: { productId: ids[0] }, k: 3 });
    expect(r.data.similarProducts).toHaveLength(3);
    // forward again to B, then write a product: only B (active) embeds it, so A cannot take over until rebuilt
    expect(
      (await t.gql(`mutation($m: String!) { activateModel(model: $m) { active } }`, { m: B.id }, { admin: true })).data.activateModel
        .active,
    ).toBe(true);
    const one = (await catalogInputs(1, 77, 'LATE'))[0]!;
    expect((await t.gql(UPSERT, { p: [one] }, { admin: true })).errors).toBeUndefined();
    const refused = await t.gql(`mutation($m: String!) { activateModel(model: $m) { id } }`, { m: A.id }, { admin: true });
    expect(codes(refused)).toEqual(['CONFLICT']);
    expect(refused.errors![0]!.message).toMatch(/onlyMissing/);
    // onlyMissing fills the gap (one product) and switches
    const fill = await t.gql(REINDEX, { model: A.id, onlyMissing: true }, { admin: true });
    expect(fill.errors).toBeUndefined();
    const done = await waitFor(fill.data.reindex.id);
    expect(done).toMatchObject({ state: 'SUCCEEDED', activated: true, processed: 1 });
    expect(await countExact(A.id)).toEqual({ products: N + 13, vectors: N + 13, current: N + 13 });
  }, 60_000);

  it('cancels a job: the active model stays, no progress after the cancel', async () => {
    const started = await t.gql(REINDEX, { model: B.id }, { admin: true });
    expect(started.errors).toBeUndefined();
    const id = started.data.reindex.id;
    await waitFor(id, ['RUNNING']);
    const c = await t.gql(`mutation($id: ID!) { cancelReindex(id: $id) { state } }`, { id }, { admin: true });
    expect(c.data.cancelReindex.state).toBe('CANCELLED');
    const at = (await t.gql(JOB, { id }, { admin: true })).data.reindexJob;
    await sleep(800);
    const later = (await t.gql(JOB, { id }, { admin: true })).data.reindexJob;
    expect(later.state).toBe('CANCELLED');
    expect(later.processed).toBeLessThan(later.total);
    expect(later.processed).toBeLessThanOrEqual(at.processed + 4); // at most the batch in flight
    const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
    expect(models.find((m: any) => m.active).id).toBe(A.id);
    expect(codes(await t.gql(`mutation($id: ID!) { cancelReindex(id: $id) { state } }`, { id }, { admin: true }))).toEqual(['CONFLICT']);
    const list = (await t.gql(`{ reindexJobs(first: 10) { id state } }`, {}, { admin: true })).data.reindexJobs;
    expect(list[0]).toEqual({ id, state: 'CANCELLED' });
  }, 60_000);

  it('drops a non-active model’s vectors and index', async () => {
    const dropped = await t.gql(`mutation($m: String!) { dropModelEmbeddings(model: $m) }`, { m: B.id }, { admin: true });
    expect(dropped.errors).toBeUndefined();
    expect(dropped.data.dropModelEmbeddings).toBeGreaterThan(0);
    const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
    expect(models.find((m: any) => m.id === B.id)).toMatchObject({ vectors: 0, status: 'RETIRED', active: false });
    expect(await listCategoryIndexes(db(), B.id)).toEqual([]);
    const r = await t.gql(SIMILAR, { image: { productId: ids[1] }, k: K });
    expect(r.data.similarProducts).toHaveLength(K);
  });
});
