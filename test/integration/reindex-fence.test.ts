/**
 * The lease and the fence, on the repository directly: a job held by a live worker cannot be claimed; once
 * its heartbeat is older than the lease another worker takes it over, and from then on every commit of the
 * first worker is refused (so two workers never both advance one job). Cancel stops the holder the same way.
 *
 * @backend the lease and fence statements, the claim transaction
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import {
  cancelJob,
  claimReindexJob,
  getReindexJob,
  heartbeat,
  insertReindexJob,
  LostJobError,
  orphanedJobs,
} from '../../src/db/reindex-jobs.js';
import { claimJob, commitBatch } from '../../src/jobs/reindex.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { createTestDatabase } from '../support/test-db.js';

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
  await registerModel(database.db, { id: 'test/fence', source: 'test', variant: null, dimension: 4 });
});
afterAll(() => database?.close());

const commit = (jobId: string, workerId: string, cursor: string) =>
  database.db.transaction().execute((trx) =>
    commitBatch(trx, {
      jobId,
      workerId,
      modelId: 'test/fence',
      cursor,
      processed: 1,
      failed: 0,
      errors: [{ productId: cursor, sku: null, message: 'x' }],
      vectors: [],
    }),
  );

it('fences commits on the worker that holds the lease', async () => {
  const db = database.db;
  const job = await insertReindexJob(db, { modelId: 'test/fence', onlyMissing: false, activate: true });
  expect(await claimReindexJob(db, job.id, 'w1', 60)).toMatchObject({ state: 'running', workerId: 'w1', attempts: 1 });
  expect(await claimReindexJob(db, job.id, 'w2', 60)).toBeNull(); // w1 is alive
  await commit(job.id, 'w1', '10');
  expect(await orphanedJobs(db, 60, 'w2')).toHaveLength(0);

  // w1 stops beating: after the lease, w2 may take the job over
  await sql`UPDATE reindex_jobs SET heartbeat_at = now() - interval '2 minutes' WHERE id = ${job.id}`.execute(db);
  expect((await orphanedJobs(db, 60, 'w2')).map((j) => j.id)).toEqual([job.id]);
  // w1 itself, alive, sees its stale job as orphaned unless it is still running it (a run that ended while
  // the database was down could not hand the job back)
  expect((await orphanedJobs(db, 60, 'w1', [])).map((j) => j.id)).toEqual([job.id]);
  expect(await orphanedJobs(db, 60, 'w1', [job.id])).toHaveLength(0);
  expect(await claimReindexJob(db, job.id, 'w2', 60)).toMatchObject({ workerId: 'w2', attempts: 2, cursor: '10', processed: 1 });
  await expect(commit(job.id, 'w1', '20')).rejects.toBeInstanceOf(LostJobError);
  expect(await heartbeat(db, job.id, 'w1')).toBe(false);
  await commit(job.id, 'w2', '20');
  const now = await getReindexJob(db, job.id);
  expect(now).toMatchObject({ cursor: '20', processed: 2 });
  expect(now!.errors.map((e) => e.productId)).toEqual(['10', '20']);

  // cancel: the holder's next commit and heartbeat are refused
  expect(await cancelJob(db, job.id)).toMatchObject({ state: 'cancelled' });
  await expect(commit(job.id, 'w2', '30')).rejects.toBeInstanceOf(LostJobError);
  expect(await heartbeat(db, job.id, 'w2')).toBe(false);
  expect(await claimReindexJob(db, job.id, 'w3', 60)).toBeNull();
  expect((await getReindexJob(db, job.id))!.cursor).toBe('20');
});

it('caps the recorded errors at 100, keeping the first', async () => {
  const db = database.db;
  await registerModel(db, { id: 'test/fence-2', source: 'test', variant: null, dimension: 4 });
  const job = await insertReindexJob(db, { modelId: 'test/fence-2', onlyMissing: false, activate: true });
  await claimReindexJob(db, job.id, 'w', 60);
  for (let b = 0; b < 3; b++) {
    const errors = Array.from({ length: 40 }, (_, i) => ({ productId: String(b * 40 + i), sku: null, message: 'bad' }));
    await db.transaction().execute((trx) =>
      commitBatch(trx, {
        jobId: job.id,
        workerId: 'w',
        modelId: 'test/fence-2',
        cursor: String((b + 1) * 40),
        processed: 40,
        failed: 40,
        errors,
        vectors: [],
      }),
    );
  }
  const j = (await getReindexJob(db, job.id))!;
  expect(j.failed).toBe(120);
  expect(j.errors).toHaveLength(100);
  expect(j.errors[0]!.productId).toBe('0');
  expect(j.errors[99]!.productId).toBe('99');
});

it('shows a claimed job RUNNING only with its total: the claim and the count commit together', async () => {
  const db = database.db;
  await registerModel(db, { id: 'test/fence-3', source: 'test', variant: null, dimension: 4 });
  const inserted = await sql<{ id: string }>`
    INSERT INTO products (sku, title, category) SELECT 'claim-' || i, 't', 'c' FROM generate_series(1, 7) AS i RETURNING id`.execute(db);
  await db
    .insertInto('product_images')
    .values(
      inserted.rows.map((r) => ({
        product_id: String(r.id),
        position: 0,
        regions: '[]',
        sha256: 'b'.repeat(64),
        format: 'png',
        width: 1,
        height: 1,
        original: Buffer.from([0]),
        thumbnail: Buffer.from([0]),
      })),
    )
    .execute();
  const total = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM product_images`.execute(db)).rows[0]!.n);
  const job = await insertReindexJob(db, { modelId: 'test/fence-3', onlyMissing: false, activate: true });
  // Another connection polls the job (as reindexJob over GraphQL does) while the worker claims it.
  const seen: Array<{ state: string; total: number }> = [];
  let claiming = true;
  const poll = (async () => {
    while (claiming) {
      const j = await getReindexJob(db, job.id);
      seen.push({ state: j!.state, total: j!.total });
      await new Promise((r) => setImmediate(r));
    }
  })();
  const claimed = await claimJob(db, job.id, 'w', 60);
  claiming = false;
  await poll;
  expect(claimed).toMatchObject({ state: 'running', total });
  expect(await getReindexJob(db, job.id)).toMatchObject({ state: 'running', total });
  expect(seen.filter((s) => s.state === 'running' && s.total !== total)).toEqual([]);
});
