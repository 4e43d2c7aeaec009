/**
 * A tagging run survives SIGKILL: the service runs as a child process (`vps serve`), a tagging run is under
 * way, the process is killed; a fresh process resumes the run after its last committed batch and ends with
 * exactly one set of suggestions per product, none skipped, none twice, and no product changed.
 * PostgreSQL (TEST_DATABASE_URL): the new process takes the run over once the dead worker's lease runs out.
 * PGlite: the data directory belongs to one process, so the new one resumes the run at start.
 *
 * @backend job recovery at start (the embedded database recovers in-process)
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connect.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';
import { catalogInputs, sleep, startServiceChild, UPSERT, writeModelA, type Child } from './reindex-support.js';

const N = 48;
const TAG = `mutation { tagCatalog(attribute: "colour", labels: ["red", "green", "blue", "black"]) { id } }`;
const TAG_JOB = `query($id: ID!) { tagJob(id: $id) { state processed total failed attempts } }`;
let A: { dir: string; id: string };
let testDb: TestDatabase | null = null;
let dataDir: string | null = null;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  A = await writeModelA();
  testDb = await createTestDatabase();
  if (!testDb.url) {
    await testDb.close();
    testDb = null;
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-tag-crash-'));
  }
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await testDb?.close();
  for (const d of [A?.dir, dataDir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

const startChild = (): Promise<Child> =>
  startServiceChild(
    {
      modelDir: A.dir,
      databaseUrl: testDb?.url ?? null,
      dataDir,
      env: { EMBEDDING_LOGIT_SCALE: '0', EMBEDDING_LOGIT_BIAS: '0', REINDEX_THROTTLE_MS: '150' },
    },
    children,
  );

it('resumes a tagging run killed with SIGKILL and ends with exactly one set of suggestions per product', async () => {
  const first = await startChild();
  const upserted = await first.gql(UPSERT, { p: await catalogInputs(N, 4, 'TC') });
  expect(upserted.errors).toBeUndefined();
  const started = await first.gql(TAG);
  expect(started.errors).toBeUndefined();
  const id = started.data.tagCatalog.id;
  let before: any;
  for (;;) {
    before = (await first.gql(TAG_JOB, { id })).data.tagJob;
    if (before.state === 'RUNNING' && before.processed >= 12) break;
    expect(['QUEUED', 'RUNNING']).toContain(before.state);
    await sleep(30);
  }
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  expect(before.processed).toBeLessThan(N);

  const second = await startChild();
  let job: any;
  const until = Date.now() + 90_000;
  for (;;) {
    job = (await second.gql(TAG_JOB, { id })).data.tagJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.state)) break;
    if (Date.now() > until) throw new Error(`tagging still ${JSON.stringify(job)}`);
    await sleep(100);
  }
  expect(job).toMatchObject({ state: 'SUCCEEDED', processed: N, total: N, failed: 0 });
  expect(job.attempts).toBeGreaterThanOrEqual(2);
  second.proc.kill('SIGTERM');
  await new Promise((r) => second.proc.once('exit', r));

  const database = testDb ?? (await openDatabase({ kind: 'pglite', dataDir: path.join(dataDir!, 'pglite') }));
  try {
    const r = await sql<{ rows: string; products: string; ranks: string; touched: string }>`
      SELECT (SELECT count(*) FROM tag_suggestions WHERE attribute = 'colour') AS rows,
             (SELECT count(DISTINCT product_id) FROM tag_suggestions WHERE attribute = 'colour') AS products,
             (SELECT count(DISTINCT (product_id, rank)) FROM tag_suggestions WHERE attribute = 'colour') AS ranks,
             (SELECT count(*) FROM products WHERE attributes ? 'colour') AS touched`.execute(database.db);
    const counts = Object.fromEntries(Object.entries(r.rows[0]!).map(([k, v]) => [k, Number(v)]));
    expect(counts).toEqual({ rows: N * 3, products: N, ranks: N * 3, touched: 0 });
  } finally {
    if (!testDb) await database.close();
  }
}, 180_000);
