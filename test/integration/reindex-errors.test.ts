/**
 * Per-product errors: a product whose stored image the new model's engine rejects is recorded (id, sku,
 * message) while the rest of the catalog is embedded; the model is not activated while a product lacks its
 * vector; once the product is fixed (here: deleted), reindex(onlyMissing) completes and switches.
 */
import fs from 'node:fs/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';
import { catalogInputs, JOB, MODELS, REINDEX, sleep, UPSERT, writeCachedModel, writeModelA } from './reindex-support.js';

let t: TestService;
let A: { dir: string; id: string };
let B: { dir: string; id: string };
let ids: string[] = [];

beforeAll(async () => {
  A = await writeModelA();
  B = await writeCachedModel();
  t = await startTestService({ REINDEX_BATCH_SIZE: '3', JOBS_POLL_INTERVAL_MS: '500' }, { model: A.dir });
  const res = await t.gql(UPSERT, { p: await catalogInputs(10, 8, 'E') }, { admin: true });
  expect(res.errors).toBeUndefined();
  ids = res.data.upsertProducts.map((p: { id: string }) => p.id);
}, 120_000);
afterAll(async () => {
  await t?.stop();
  for (const d of [A?.dir, B?.dir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

async function waitFor(id: string) {
  for (let i = 0; i < 600; i++) {
    const j = (await t.gql(JOB, { id }, { admin: true })).data.reindexJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(j.state)) return j;
    await sleep(100);
  }
  throw new Error('job did not finish');
}

it('records products the engine rejects, does not switch, and completes once they are gone', async () => {
  const db = t.service.services.database.db;
  // two stored originals become undecodable (as if the bytes rotted on disk)
  const bad = [ids[4]!, ids[7]!];
  await sql`UPDATE product_images SET original = ${Buffer.from('not an image at all')} WHERE product_id IN (${sql.join(bad)})`.execute(db);

  const started = await t.gql(REINDEX, { model: B.id }, { admin: true });
  expect(started.errors).toBeUndefined();
  const job = await waitFor(started.data.reindex.id);
  expect(job).toMatchObject({ state: 'FAILED', activated: false, processed: 10, total: 10, failed: 2 });
  expect(job.error).toMatch(/2 product\(s\) have no vector/);
  expect(job.errors.map((e: any) => e.productId).sort()).toEqual([...bad].sort());
  expect(job.errors[0].sku).toMatch(/^E-/);
  expect(job.errors[0].message).toMatch(/^INVALID_IMAGE/);
  const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
  expect(models.find((m: any) => m.active).id).toBe(A.id);
  expect(models.find((m: any) => m.id === B.id)).toMatchObject({ vectors: 8, status: 'READY' });

  for (const id of bad)
    expect((await t.gql(`mutation($id: ID!) { deleteProduct(id: $id) }`, { id }, { admin: true })).data.deleteProduct).toBe(true);
  const fill = await t.gql(REINDEX, { model: B.id, onlyMissing: true }, { admin: true });
  const done = await waitFor(fill.data.reindex.id);
  expect(done).toMatchObject({ state: 'SUCCEEDED', activated: true, processed: 0, failed: 0 });
  const after = (await t.gql(MODELS, {}, { admin: true })).data.models;
  expect(after.find((m: any) => m.active)).toMatchObject({ id: B.id, vectors: 8 });
});

it('re-embeds the active model when no model is given; activate: false builds a model without switching', async () => {
  const same = await t.gql(REINDEX, {}, { admin: true });
  expect(same.errors).toBeUndefined();
  expect(same.data.reindex.model).toBe(B.id);
  expect(await waitFor(same.data.reindex.id)).toMatchObject({ state: 'SUCCEEDED', activated: false, processed: 8, failed: 0 });

  const built = await t.gql(REINDEX, { model: A.id, activate: false }, { admin: true });
  expect(built.errors).toBeUndefined();
  expect(await waitFor(built.data.reindex.id)).toMatchObject({ state: 'SUCCEEDED', activated: false, processed: 8 });
  const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
  expect(models.find((m: any) => m.id === B.id)).toMatchObject({ active: true, vectors: 8 });
  expect(models.find((m: any) => m.id === A.id)).toMatchObject({ active: false, status: 'READY', vectors: 8 });
  const listed = (await t.gql(`{ reindexJobs(state: SUCCEEDED, model: "${A.id}") { id activate } }`, {}, { admin: true })).data.reindexJobs;
  expect(listed).toEqual([{ id: built.data.reindex.id, activate: false }]);
});
