/**
 * Crash and resume: the service runs as a child process (`vps serve`), a reindex of a catalog whose
 * products have several photos (one with a region) is under way, the process is killed with SIGKILL; a
 * fresh process resumes the job from its last committed batch, and in the end every photo has exactly its
 * vectors of the new model (the whole photo's and one per region), none skipped, none duplicated, none
 * half-written; progress counts photos, and the job's coverage says products beside them. Rolling back to
 * the previous model afterwards finds its vectors intact.
 * PostgreSQL (TEST_DATABASE_URL): the new process takes the job over once the dead worker's lease runs out.
 * PGlite: the data directory belongs to one process, so the new one resumes the job at start.
 * Then a graceful stop (SIGTERM) mid-job: the job is handed back to the queue and a third process finishes it.
 *
 * @backend job recovery at start (the embedded database recovers in-process)
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';
import {
  catalogInputs,
  JOB,
  MODELS,
  REINDEX,
  sleep,
  startServiceChild,
  UPSERT,
  writeCachedModel,
  writeModelA,
  type Child,
} from './reindex-support.js';

const N = 60;
/** Photos per product; the last has one region, so a product has PHOTOS + 1 vectors per model. */
const PHOTOS = 3;
const VECTORS = N * (PHOTOS + 1);
const JOB_COVERAGE = `query($id: ID!) { reindexJob(id: $id) { state processed total failed activated attempts
  coverage { products productsEmbedded photos photosEmbedded vectors } } }`;
let A: { dir: string; id: string };
let B: { dir: string; id: string };
let testDb: TestDatabase | null = null;
let dataDir: string | null = null;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  A = await writeModelA();
  B = await writeCachedModel();
  testDb = await createTestDatabase();
  if (!testDb.url) {
    // PGlite: the children use their own data directory; this file's in-memory database is not needed
    await testDb.close();
    testDb = null;
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-crash-'));
  }
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await testDb?.close();
  for (const d of [A?.dir, B?.dir, dataDir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

const startChild = (): Promise<Child> => startServiceChild({ modelDir: A.dir, databaseUrl: testDb?.url ?? null, dataDir }, children);

/**
 * Counted on the database itself: photos, the model's vectors, and photos whose vectors are exactly theirs
 * (region 0 and one per region of the photo, each once, on the photo's own bytes): a batch half-written by
 * the killed process, or written twice by the resumed one, would make a photo fall out of `whole`.
 */
async function exactCounts(database: Database, modelId: string) {
  const r = await sql<{ products: string; photos: string; vectors: string; whole: string }>`
    SELECT (SELECT count(DISTINCT product_id) FROM product_images) AS products,
           (SELECT count(*) FROM product_images) AS photos,
           (SELECT count(*) FROM product_embeddings WHERE model_id = ${modelId}) AS vectors,
           (SELECT count(*) FROM product_images pi
             WHERE (SELECT array_agg(e.region::int ORDER BY e.region) FROM product_embeddings e
                     WHERE e.image_id = pi.id AND e.model_id = ${modelId} AND e.image_sha256 = pi.sha256)
                   = (SELECT array_agg(g ORDER BY g) FROM generate_series(0, jsonb_array_length(pi.regions)) g)) AS whole`.execute(
    database.db,
  );
  const row = r.rows[0]!;
  return { products: Number(row.products), photos: Number(row.photos), vectors: Number(row.vectors), whole: Number(row.whole) };
}

it('resumes a reindex of a catalog of several photos per product killed with SIGKILL (and paused by SIGTERM), ends with exactly each photo’s vectors, and rolls back', async () => {
  const first = await startChild();
  const inputs = await catalogInputs(N, 3, 'CR', PHOTOS);
  for (let i = 0; i < N; i += 30) {
    const r = await first.gql(UPSERT, { p: inputs.slice(i, i + 30) });
    expect(r.errors).toBeUndefined();
  }
  const started = await first.gql(REINDEX, { model: B.id });
  expect(started.errors).toBeUndefined();
  const id = started.data.reindex.id;
  let before: any;
  for (;;) {
    before = (await first.gql(JOB, { id })).data.reindexJob;
    if (before.state === 'RUNNING' && before.processed >= 12) break;
    expect(['QUEUED', 'RUNNING']).toContain(before.state);
    await sleep(30);
  }
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  expect(before.processed).toBeLessThan(N * PHOTOS);

  // the second process resumes the job; a graceful stop (SIGTERM) mid-job pauses it at a batch boundary
  const second = await startChild();
  let mid: any;
  for (let i = 0; ; i++) {
    mid = (await second.gql(JOB, { id })).data.reindexJob;
    if (mid.state === 'RUNNING' && mid.attempts >= 2 && mid.processed >= before.processed + 8) break;
    expect(mid.state).not.toBe('SUCCEEDED'); // throttled: it cannot be done yet
    if (i > 1200) throw new Error(`job not resumed: ${JSON.stringify(mid)}`);
    await sleep(50);
  }
  second.proc.kill('SIGTERM');
  const code = await new Promise((r) => second.proc.once('exit', r));
  expect(code).toBe(0);

  const third = await startChild();
  let job: any;
  const until = Date.now() + 60_000;
  for (;;) {
    job = (await third.gql(JOB, { id })).data.reindexJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.state)) break;
    if (Date.now() > until) throw new Error(`job still ${job.state}`);
    await sleep(100);
  }
  // Progress counts photos; the coverage counts products, photos and vectors beside them.
  expect(job).toMatchObject({ state: 'SUCCEEDED', activated: true, processed: N * PHOTOS, total: N * PHOTOS, failed: 0 });
  expect(job.attempts).toBeGreaterThanOrEqual(3);
  const covered = (await third.gql(JOB_COVERAGE, { id })).data.reindexJob.coverage;
  expect(covered).toEqual({ products: N, productsEmbedded: N, photos: N * PHOTOS, photosEmbedded: N * PHOTOS, vectors: VECTORS });
  const models = (await third.gql(MODELS)).data.models;
  expect(models.find((m: any) => m.active).id).toBe(B.id);

  // Rollback: the previous model takes search back at once (its vectors were kept), and finds a product
  // by its other photo.
  const back = await third.gql(`mutation($m: String!) { activateModel(model: $m) { id active } }`, { m: A.id });
  expect(back.errors).toBeUndefined();
  expect(back.data.activateModel).toEqual({ id: A.id, active: true });
  const side = (inputs[7]!.images as Array<{ image: unknown }>)[1]!.image;
  const found = await third.gql(
    `query($image: ImageInput!) { similarProducts(image: $image, k: 3) { product { sku } matchedImage { label } } }`,
    {
      image: side,
    },
  );
  expect(found.errors).toBeUndefined();
  expect(found.data.similarProducts).toHaveLength(3);
  expect(new Set(found.data.similarProducts.map((m: any) => m.product.sku)).size).toBe(3);

  // stop gracefully, then count on the database itself
  third.proc.kill('SIGTERM');
  await new Promise((r) => third.proc.once('exit', r));
  const database = testDb ?? (await openDatabase({ kind: 'pglite', dataDir: path.join(dataDir!, 'pglite') }));
  try {
    expect(await exactCounts(database, B.id)).toEqual({ products: N, photos: N * PHOTOS, vectors: VECTORS, whole: N * PHOTOS });
    expect(await exactCounts(database, A.id)).toEqual({ products: N, photos: N * PHOTOS, vectors: VECTORS, whole: N * PHOTOS });
    const active = await sql<{ id: string }>`SELECT id FROM embedding_models WHERE is_active`.execute(database.db);
    expect(active.rows.map((r) => r.id)).toEqual([A.id]);
  } finally {
    if (!testDb) await database.close();
  }
}, 180_000);
