/**
 * Read replicas (DATABASE_READ_URL) against a real streaming replica: a hot standby made by
 * pg_basebackup -R from the test cluster (scripts/pg-replica.sh), in a directory of its own. Replication
 * lag is made deterministic by pausing the standby's WAL replay (pg_wal_replay_pause()).
 *
 * Searches and storefront reads run on the replica; the admin's requests on the primary; after an admin
 * request a write fence keeps this process's reads on the primary until the replica has replayed it; a
 * model switch the replica has not replayed yet is answered by the primary; a replica that is down sends
 * its reads to the primary. PostgreSQL only (PGlite has no replicas: DATABASE_READ_URL is refused).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startService, type RunningService } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { upsertEmbeddings } from '../../src/db/embeddings.js';
import { databaseFaultError } from '../../src/db/faults.js';
import { activateModel } from '../../src/db/models.js';
import { DOWN_MS, readFromPrimary } from '../../src/db/read-routing.js';
import type { DB } from '../../src/db/types.js';
import { ErrorCode } from '../../src/errors.js';
import type { FetchImageOptions } from '../../src/images/fetch.js';
import type { ImageLimits } from '../../src/images/decode.js';
import { createLogger } from '../../src/log.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { ModelService } from '../../src/models/service.js';
import { SearchService } from '../../src/search/service.js';
import { ADMIN_TOKEN } from '../support/service.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';
import { embeddingLikeSpace } from '../support/vectors.js';

const run = promisify(execFile);
const info = inject('testDb');
const script = path.resolve('scripts/pg-replica.sh');

let stateDir = '';
let primary: TestDatabase;
let replicaUrl = '';
let standby: pg.Client;
let routed: Database;

const replicaScript = (...args: string[]) =>
  run(script, args, { env: { ...process.env, PG_REPLICA_STATE: stateDir }, timeout: 120_000 }).then((r) => r.stdout.trim());

const inRecovery = async (db: Kysely<DB>) => (await sql<{ r: boolean }>`SELECT pg_is_in_recovery() AS r`.execute(db)).rows[0]!.r;

/** A direct session on the standby (to pause its replay); it is cut off when the standby stops. */
async function connectStandby(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: replicaUrl });
  client.on('error', () => {});
  await client.connect();
  return client;
}

const pauseReplay = () => standby.query('SELECT pg_wal_replay_pause()');
const resumeReplay = () => standby.query('SELECT pg_wal_replay_resume()');

// The standby is made with this machine's PostgreSQL programs from a server on this machine (the
// throwaway cluster CI provisions). A server elsewhere (a container, another host) cannot be
// base-backed-up that way: the file is skipped, saying why, rather than failing on the environment.
function standbyUnavailable(): string | null {
  if (info.kind !== 'postgres') return 'PGlite has no replicas';
  const host = new URL(info.adminUrl).hostname;
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) return `the test server (${host}) is not on this machine`;
  const bins = (() => {
    try {
      return readdirSync('/usr/lib/postgresql').filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/pg_basebackup`));
    } catch {
      return [];
    }
  })();
  if (!bins.length && !process.env.PG_BIN) return 'no pg_basebackup on this machine (scripts/provision-postgres.sh)';
  return null;
}
const skipReason = standbyUnavailable();
if (skipReason && info.kind === 'postgres') console.warn(`read-replicas.test.ts skipped: ${skipReason}`);

describe.skipIf(skipReason !== null)('read replicas (streaming standby from pg_basebackup)', () => {
  beforeAll(async () => {
    if (info.kind !== 'postgres') return;
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-replica-state-'));
    primary = await createTestDatabase(); // created on the primary before the backup: the standby has it
    const clusterUrl = new URL(await replicaScript('start', info.adminUrl));
    clusterUrl.pathname = new URL(primary.url!).pathname;
    replicaUrl = clusterUrl.toString();
    standby = await connectStandby();
    routed = await openDatabase({ kind: 'postgres', url: primary.url!, readUrls: [replicaUrl], poolSize: 4, connectTimeoutMs: 1_000 });
  }, 180_000);

  afterAll(async () => {
    await standby?.end().catch(() => {});
    await routed?.close();
    await primary?.close();
    if (stateDir) {
      await replicaScript('stop').catch(() => {});
      await fs.rm(stateDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('runs routed reads on the replica and everything else on the primary', async () => {
    expect(await inRecovery(routed.reads)).toBe(true);
    expect(await inRecovery(routed.db)).toBe(false);
    expect(await readFromPrimary(() => inRecovery(routed.reads))).toBe(false);
    expect(routed.readRouter!.stats.statements[routed.readRouter!.replicaNames[0]!]).toBeGreaterThan(0);
  });

  it('read-your-writes: after a fence, reads go to the primary until the replica has replayed the write', async () => {
    await pauseReplay();
    try {
      const sku = 'ryw-1';
      await sql`INSERT INTO products (sku, title, category) VALUES (${sku}, 'written', 'c')`.execute(routed.db);
      const seen = async () =>
        (await sql<{ n: number }>`SELECT count(*)::int AS n FROM products WHERE sku = ${sku}`.execute(routed.reads)).rows[0]!.n;
      expect(await seen()).toBe(0); // the replica lags: without a fence the write is not visible yet
      await routed.readRouter!.fenceWrites();
      expect(await seen()).toBe(1);
      expect(await inRecovery(routed.reads)).toBe(false); // answered by the primary
    } finally {
      await resumeReplay();
    }
    await routed.readRouter!.caughtUp();
    expect(await inRecovery(routed.reads)).toBe(true); // back on the replica once it has replayed
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM products WHERE sku = 'ryw-1'`.execute(routed.reads)).rows[0]!.n).toBe(
      1,
    );
  });

  it('a model switch the replica has not replayed yet is answered by the primary, with the new model', async () => {
    const a = { id: 'test/replica-a', dimension: 16 };
    const b = { id: 'test/replica-b', dimension: 16 };
    const spaceA = embeddingLikeSpace({ dimension: 16, seed: 21 });
    const spaceB = embeddingLikeSpace({ dimension: 16, seed: 22 });
    const db = routed.db;
    for (const m of [a, b]) await registerModel(db, { ...m, source: 'test', variant: null });
    await activateModel(db, a.id);
    const rows = Array.from({ length: 300 }, (_, i) => i);
    const ids = (
      await sql<{ id: string }>`
        INSERT INTO products (sku, title, category) SELECT 'rm-' || i, 'p ' || i, 'models' FROM unnest(${rows}::int[]) AS t(i) ORDER BY i
        RETURNING id`.execute(db)
    ).rows.map((r) => String(r.id));
    await upsertEmbeddings(
      db,
      ids.map((productId, i) => ({ productId, modelId: a.id, embedding: spaceA.vector(i), imageSha256: 'a'.repeat(64) })),
    );
    await ensureModelIndex(db, a);
    await routed.readRouter!.fenceWrites();
    await routed.readRouter!.caughtUp();

    const models = new ModelService(routed, createLogger('silent'));
    const search = new SearchService(routed.reads, models, {} as FetchImageOptions, {} as ImageLimits);
    const q = { kind: 'product' as const, id: ids[7]! };
    const before = await search.similarToImage(q, { k: 5, category: 'models' });
    expect(before.model).toBe(a.id);
    expect(before.matches[0]!.product.id).toBe(ids[7]);

    await pauseReplay();
    try {
      // B's vectors, index and the switch reach the primary only: the replica knows neither.
      await upsertEmbeddings(
        db,
        ids.map((productId, i) => ({ productId, modelId: b.id, embedding: spaceB.vector(i), imageSha256: 'a'.repeat(64) })),
      );
      await ensureModelIndex(db, b);
      await activateModel(db, b.id);
      models.invalidateActiveModel(); // as the process that made the switch does
      const primaryBefore = routed.readRouter!.stats.statements.primary!;
      const after = await search.similarToImage(q, { k: 5, category: 'models' });
      expect(after.model).toBe(b.id);
      expect(after.matches).toHaveLength(5);
      expect(after.matches[0]!.product.id).toBe(ids[7]);
      expect(routed.readRouter!.stats.statements.primary!).toBeGreaterThan(primaryBefore);
    } finally {
      await resumeReplay();
    }
    await routed.readRouter!.fenceWrites();
    await routed.readRouter!.caughtUp();
    const replica = routed.readRouter!.replicaNames[0]!;
    const onReplica = routed.readRouter!.stats.statements[replica]!;
    const caught = await search.similarToImage(q, { k: 5, category: 'models' });
    expect(caught.model).toBe(b.id);
    expect(routed.readRouter!.stats.statements[replica]!).toBeGreaterThan(onReplica);
    // the vector query's own statement compared with the step by step: same neighbours either way
    expect(caught.matches.map((m) => m.product.id)).toEqual(
      (
        await sql<{ id: string }>`
          SELECT product_id AS id FROM product_embeddings JOIN products p ON p.id = product_id
          WHERE model_id = ${b.id} AND p.category = 'models'
          ORDER BY embedding::halfvec(16) <=> (SELECT embedding FROM product_embeddings WHERE model_id = ${b.id} AND product_id = ${ids[7]!}), product_id
          LIMIT 5`.execute(routed.db)
      ).rows.map((r) => String(r.id)),
    );

    // Back to A while the replica is paused: it has A's vectors, so the statement runs there and its guard
    // (A not active on the replica yet) sends the query to the primary.
    await pauseReplay();
    try {
      await activateModel(db, a.id);
      models.invalidateActiveModel();
      const primaryBefore = routed.readRouter!.stats.statements.primary!;
      const back = await search.similarToImage(q, { k: 5, category: 'models' });
      expect(back.model).toBe(a.id);
      expect(back.matches.map((m) => m.product.id)).toEqual(before.matches.map((m) => m.product.id));
      expect(routed.readRouter!.stats.statements.primary!).toBeGreaterThan(primaryBefore);
    } finally {
      await resumeReplay();
    }
  });

  it('through the service: the admin reads from the primary, and a storefront read after an admin write sees it', async () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ADMIN_TOKEN,
      DATA_DIR: '.cache/test-data',
      JOBS_ENABLED: 'false',
    });
    // The service owns the database it is given: a routed one of its own over the same servers.
    const own = await openDatabase({ kind: 'postgres', url: primary.url!, readUrls: [replicaUrl], poolSize: 4 });
    let service: RunningService | undefined;
    try {
      service = await startService(config, createLogger('silent'), { database: own, embedder: null });
      const gql = async (query: string, variables: Record<string, unknown>, admin: boolean) => {
        const res = await fetch(`${service!.http.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(admin ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {}) },
          body: JSON.stringify({ query, variables }),
        });
        return (await res.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
      };
      await pauseReplay();
      try {
        // Written by someone else (another instance, a script): no fence in this process.
        const id = String(
          (
            await sql<{ id: string }>`INSERT INTO products (sku, title, category) VALUES ('svc-1', 'elsewhere', 'c') RETURNING id`.execute(
              primary.db,
            )
          ).rows[0]!.id,
        );
        const byId = 'query($id: ID!) { product(id: $id) { sku } }';
        expect((await gql(byId, { id }, false)).data).toEqual({ product: null }); // the storefront: replica, lagging
        expect((await gql(byId, { id }, true)).data).toEqual({ product: { sku: 'svc-1' } }); // the admin: primary
        // The admin writes through this service: its answer leaves after the fence, so the next storefront
        // read of this process sees it (and the earlier write too: the primary answers).
        const up = await gql(
          'mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }',
          { p: [{ sku: 'svc-2', title: 'admin wrote', category: 'c' }] },
          true,
        );
        expect(up.errors).toBeUndefined();
        const written = (up.data!.upsertProducts as Array<{ id: string }>)[0]!.id;
        expect((await gql(byId, { id: written }, false)).data).toEqual({ product: { sku: 'svc-2' } });
        expect((await gql(byId, { id }, false)).data).toEqual({ product: { sku: 'svc-1' } });
      } finally {
        await resumeReplay();
      }
    } finally {
      if (service) await service.stop();
      else await own.close();
    }
  });

  it('a replica that is down: reads fall back to the primary, and return to the replica once it is back', async () => {
    await replicaScript('down');
    await standby.end().catch(() => {});
    try {
      const fallbacks = routed.readRouter!.stats.fallbacks;
      expect(await inRecovery(routed.reads)).toBe(false); // no error: the primary answered
      expect(routed.readRouter!.stats.fallbacks).toBeGreaterThan(fallbacks);
      expect(await inRecovery(routed.reads)).toBe(false); // marked down: not even tried for DOWN_MS
    } finally {
      await replicaScript('up');
      standby = await connectStandby();
    }
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS + 200));
    expect(await inRecovery(routed.reads)).toBe(true);
  }, 60_000);

  it('with the primary unreachable too, a read answers DATABASE_UNAVAILABLE', async () => {
    // Closed loopback ports for both: nothing listens on port 1.
    const dead = await openDatabase({
      kind: 'postgres',
      url: 'postgres://nobody:x@127.0.0.1:1/none',
      readUrls: ['postgres://nobody:x@127.0.0.1:1/none'],
      connectTimeoutMs: 500,
    });
    try {
      const err = await sql`SELECT 1`.execute(dead.reads).then(
        () => null,
        (e: unknown) => e,
      );
      expect(databaseFaultError(err)?.code).toBe(ErrorCode.DATABASE_UNAVAILABLE);
    } finally {
      await dead.close();
    }
  });
});
