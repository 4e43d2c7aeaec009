/**
 * Crash and resume: the service runs as a child process (`vps serve`), a reindex is under way, the
 * process is killed with SIGKILL; a fresh process resumes the job from its last committed batch, and in the
 * end every product has exactly one vector of the new model, none skipped, none duplicated.
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

async function exactCounts(database: Database, modelId: string) {
  const r = await sql<{ products: string; vectors: string; current: string }>`
    SELECT (SELECT count(*) FROM product_images) AS products,
           (SELECT count(*) FROM product_embeddings WHERE model_id = ${modelId}) AS vectors,
           (SELECT count(DISTINCT e.product_id) FROM product_embeddings e JOIN product_images pi ON pi.product_id = e.product_id AND pi.sha256 = e.image_sha256
             WHERE e.model_id = ${modelId}) AS current`.execute(database.db);
  return { products: Number(r.rows[0]!.products), vectors: Number(r.rows[0]!.vectors), current: Number(r.rows[0]!.current) };
}

it('resumes a reindex killed with SIGKILL (and paused by SIGTERM) and ends with exactly one vector per product', async () => {
  const first = await startChild();
  const inputs = await catalogInputs(N, 3, 'CR');
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
  expect(before.processed).toBeLessThan(N);

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
  expect(job).toMatchObject({ state: 'SUCCEEDED', activated: true, processed: N, total: N, failed: 0 });
  expect(job.attempts).toBeGreaterThanOrEqual(3);
  const models = (await third.gql(MODELS)).data.models;
  expect(models.find((m: any) => m.active).id).toBe(B.id);

  // stop gracefully, then count on the database itself
  third.proc.kill('SIGTERM');
  await new Promise((r) => third.proc.once('exit', r));
  const database = testDb ?? (await openDatabase({ kind: 'pglite', dataDir: path.join(dataDir!, 'pglite') }));
  try {
    expect(await exactCounts(database, B.id)).toEqual({ products: N, vectors: N, current: N });
  } finally {
    if (!testDb) await database.close();
  }
}, 180_000);
