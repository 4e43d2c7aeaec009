/**
 * Model ids and bounded retries:
 * - a model copied into the model cache by hand (a hub snapshot: no .source.json, config.json naming the
 *   checkpoint it was converted from) is the model its cache entry names, so reindex(model: "org/name")
 *   loads and builds it instead of refusing it as another model;
 * - a job whose worker keeps dying is not resumed forever: after REINDEX_MAX_ATTEMPTS runs it ends FAILED
 *   with a reason.
 */
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { claimReindexJob, getReindexJob, insertReindexJob } from '../../src/db/reindex-jobs.js';
import { modelCachePath } from '../../src/hub/paths.js';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { startTestService, type TestService } from '../support/service.js';
import { catalogInputs, JOB, MODELS, REINDEX, sleep, UPSERT, writeModelA } from './reindex-support.js';

let t: TestService;
let A: { dir: string; id: string };
let copied: { dir: string; id: string } | null = null;

beforeAll(async () => {
  A = await writeModelA();
  t = await startTestService({ REINDEX_BATCH_SIZE: '4', JOBS_POLL_INTERVAL_MS: '500', REINDEX_MAX_ATTEMPTS: '2' }, { model: A.dir });
  const res = await t.gql(UPSERT, { p: await catalogInputs(6, 4, 'M') }, { admin: true });
  expect(res.errors).toBeUndefined();
}, 120_000);
afterAll(async () => {
  await t?.stop();
  for (const d of [A?.dir, copied?.dir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

it('reindexes a model placed in the cache by hand under the id its cache entry names', async () => {
  const id = `vps/hand-copied-${randomBytes(3).toString('hex')}`;
  const dir = modelCachePath(id);
  await fs.mkdir(dir, { recursive: true });
  // config.json names another checkpoint, as a converted hub snapshot does; there is no .source.json
  await writeTinyModel(dir, { dimension: 24, modelId: 'google/siglip2-base-patch16-224', seed: 33 });
  copied = { dir, id };

  const started = await t.gql(REINDEX, { model: id }, { admin: true });
  expect(started.errors).toBeUndefined();
  expect(started.data.reindex.model).toBe(id);
  let job: { state: string; activated: boolean } | undefined;
  for (let i = 0; i < 600; i++) {
    job = (await t.gql(JOB, { id: started.data.reindex.id }, { admin: true })).data.reindexJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job!.state)) break;
    await sleep(100);
  }
  expect(job).toMatchObject({ state: 'SUCCEEDED', activated: true });
  const models = (await t.gql(MODELS, {}, { admin: true })).data.models;
  expect(models.find((m: { active: boolean }) => m.active)).toMatchObject({ id, dimension: 24, loaded: true, vectors: 6 });
}, 120_000);

it('fails a job whose worker keeps dying after REINDEX_MAX_ATTEMPTS runs, with a reason', async () => {
  const { database, jobs } = t.service.services;
  const db = database.db;
  // a model no process here works: only the simulated workers below take its job
  await registerModel(db, { id: 'test/dying', source: 'test', variant: null, dimension: 8 });
  const job = await insertReindexJob(db, { modelId: 'test/dying', onlyMissing: false, activate: true });
  for (let run = 1; run <= 2; run++) {
    // a worker claims the job and dies: its heartbeat stops and outlives the lease
    expect(await claimReindexJob(db, job.id, `dead-worker-${run}`, 60)).toMatchObject({ state: 'running', attempts: run });
    await sql`UPDATE reindex_jobs SET heartbeat_at = now() - interval '10 minutes' WHERE id = ${job.id}`.execute(db);
    await jobs.recover(false);
    const after = (await getReindexJob(db, job.id))!;
    if (run < 2) expect(after).toMatchObject({ state: 'queued', workerId: null });
    else {
      expect(after.state).toBe('failed');
      expect(after.error).toMatch(/given up after 2 attempt\(s\) \(REINDEX_MAX_ATTEMPTS=2\)/);
      expect(after.finishedAt).not.toBeNull();
    }
  }
  // not resumed again: nobody can claim it, recovery leaves it alone
  expect(await claimReindexJob(db, job.id, 'another-worker', 60)).toBeNull();
  expect(await jobs.recover(false)).toBe(0);
  const gql = (await t.gql(JOB, { id: job.id }, { admin: true })).data.reindexJob;
  expect(gql).toMatchObject({ state: 'FAILED', attempts: 2 });
});
