/**
 * Chooses the real PostgreSQL the integration tests talk to, in this order:
 *   1. TEST_DATABASE_URL (any PostgreSQL with pgvector ≥ 0.8; .ci/run provisions a native one);
 *   2. testcontainers with the pgvector image, where a container runtime answers;
 *   3. the embedded PGlite (also forced with TEST_DB=pglite).
 * It migrates a template database once (a server's template database, or a dumped PGlite data
 * directory); each test file then starts from its own copy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrateToLatest } from '../../src/db/migrate.js';
import { checkVectorExtension } from '../../src/db/extension.js';
import type { DB } from '../../src/db/types.js';
import { TEMPLATE_DB, type TestDbInfo } from './test-db-info.js';

declare module 'vitest' {
  export interface ProvidedContext {
    testDb: TestDbInfo;
  }
}

/** Whether a container runtime could be there at all; testcontainers' own probe leaves file handles open. */
function mayHaveContainerRuntime(): boolean {
  if (process.env.DOCKER_HOST || process.env.TESTCONTAINERS_HOST_OVERRIDE) return true;
  const sockets = [
    '/var/run/docker.sock',
    `${os.homedir()}/.docker/run/docker.sock`,
    `/run/user/${process.getuid?.() ?? 0}/docker.sock`,
    `/run/user/${process.getuid?.() ?? 0}/podman/podman.sock`,
  ];
  return sockets.some((s) => fs.existsSync(s));
}

async function containerUrl(): Promise<{ url: string; stop: () => Promise<void> } | null> {
  if (!mayHaveContainerRuntime()) return null;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await Promise.race([getContainerRuntimeClient(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 15_000))]);
  } catch {
    return null; // no container runtime here (e.g. no Docker engine)
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('pgvector/pgvector:0.8.6-pg17-bookworm').start();
  return { url: container.getConnectionUri(), stop: async () => void (await container.stop()) };
}

export default async function setup(project: TestProject) {
  let adminUrl = process.env.TEST_DATABASE_URL ?? null;
  let stopContainer: (() => Promise<void>) | null = null;
  if (!adminUrl && process.env.TEST_DB !== 'pglite') {
    const container = await containerUrl();
    if (container) {
      adminUrl = container.url;
      stopContainer = container.stop;
    }
  }
  if (!adminUrl) {
    // As for a server: migrate once, and each test file starts from a copy (PGlite's dumpDataDir and
    // loadDataDir) instead of running every migration again.
    const started = performance.now();
    const { Mutex } = await import('async-mutex');
    const { openPglite, PgliteDialect } = await import('../../src/db/pglite.js'); // WASM: loaded only here
    const pglite = await openPglite(undefined);
    const db = new Kysely<DB>({ dialect: new PgliteDialect(pglite, new Mutex()) });
    await migrateToLatest(db);
    const dump = await pglite.dumpDataDir();
    await db.destroy();
    const template = path.join(os.tmpdir(), `vps-test-pglite-${process.pid}.tar`);
    fs.writeFileSync(template, Buffer.from(await dump.arrayBuffer()));
    project.provide('testDb', { kind: 'pglite', template });
    const ms = Math.round(performance.now() - started);
    console.log(
      `[tests] database: embedded PGlite, each test file from a migrated template (${ms} ms) (set TEST_DATABASE_URL for a PostgreSQL server)`,
    );
    return () => fs.rmSync(template, { force: true });
  }

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await admin.end();

  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${TEMPLATE_DB}`;
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: templateUrl.toString(), max: 1 }) }) });
  await sql`CREATE EXTENSION IF NOT EXISTS vector`.execute(db);
  const version = await checkVectorExtension(db);
  await migrateToLatest(db);
  await db.destroy();
  console.log(`[tests] database: PostgreSQL at ${templateUrl.host} (pgvector ${version}), one database per test file`);

  project.provide('testDb', { kind: 'postgres', adminUrl });
  return async () => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    const { rows } = await c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'vps_test_%'`);
    for (const r of rows) await c.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
    await c.end();
    await stopContainer?.();
  };
}
