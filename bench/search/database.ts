/**
 * Where the search benchmark runs: a native PostgreSQL (BENCH_DATABASE_URL or a throwaway cluster) or PGlite.
 *
 * With `keepState` the throwaway cluster lives in that directory and survives the run (the server is
 * stopped, its data kept): the next run with the same directory starts it again and finds the loaded
 * data and the built HNSW index in the database `vps_bench`, so a 1M-row run can be repeated in a quiet
 * window without the ~15 minutes of load and build.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../src/db/types.js';

export interface BenchDatabaseOptions {
  /** Directory of a cluster kept between runs (postgres only). */
  keepState?: string | null;
  /** shared_buffers for a kept cluster (the server is restarted when it differs), e.g. '6GB'. */
  sharedBuffers?: string | null;
}

const script = 'scripts/pg-throwaway.sh';

function throwaway(env: NodeJS.ProcessEnv, cmd: string): string {
  return execFileSync(script, [cmd], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

function runs(env: NodeJS.ProcessEnv, cmd: string): boolean {
  try {
    execFileSync(script, [cmd], { env, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function keptDatabase(
  dir: string,
  sharedBuffers: string | null,
): Promise<{ database: Database; url: string; stop: () => Promise<void> }> {
  const state = path.resolve(dir);
  mkdirSync(state, { recursive: true });
  // As root the server runs as `postgres`, which must be able to reach its data directory inside.
  chmodSync(state, 0o755);
  const env = { ...process.env, PG_THROWAWAY_STATE: state, PG_THROWAWAY_TMP: state };
  if (!runs(env, 'status')) {
    // A recorded cluster that is down is started in place; `start` would replace it with an empty one.
    if (existsSync(path.join(state, 'state'))) throwaway(env, 'up');
    else throwaway(env, 'start');
  }
  let url = throwaway(env, 'url');
  if (sharedBuffers) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const current = (await c.query<{ setting: string }>(`SELECT current_setting('shared_buffers') AS setting`)).rows[0]!.setting;
    if (current.toLowerCase() !== sharedBuffers.toLowerCase()) {
      await c.query(`ALTER SYSTEM SET shared_buffers = '${sharedBuffers.replace(/[^0-9A-Za-z]/g, '')}'`);
      await c.end();
      console.error(`[bench] shared_buffers ${current} → ${sharedBuffers}: restarting the kept cluster`);
      throwaway(env, 'restart');
      url = throwaway(env, 'url');
    } else await c.end();
  }
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const exists = await admin.query(`SELECT 1 FROM pg_database WHERE datname = 'vps_bench'`);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE vps_bench`);
  await admin.end();
  const u = new URL(url);
  u.pathname = '/vps_bench';
  const database = await openDatabase({ kind: 'postgres', url: u.toString(), poolSize: 12 });
  await migrateToLatest(database.db);
  return {
    database,
    url: u.toString(),
    stop: async () => {
      await database.close();
      throwaway(env, 'down');
      console.error(`[bench] kept cluster stopped; its data stays in ${state}`);
    },
  };
}

export async function benchDatabase(
  backend: 'postgres' | 'pglite',
  options: BenchDatabaseOptions = {},
): Promise<{ database: Database; url: string | null; stop: () => Promise<void> }> {
  if (backend === 'pglite') {
    const database = await openDatabase({ kind: 'pglite' });
    await migrateToLatest(database.db);
    return { database, url: null, stop: () => database.close() };
  }
  if (options.keepState) return keptDatabase(options.keepState, options.sharedBuffers ?? null);
  let url = process.env.BENCH_DATABASE_URL;
  let throwawayStarted = false;
  const env = { ...process.env, PG_THROWAWAY_STATE: process.env.PG_THROWAWAY_STATE ?? '.cache/pg-bench' };
  if (!url) {
    // Stop the cluster afterwards only if this run started it.
    const running = runs(env, 'status');
    url = execFileSync(script, ['start'], { env, encoding: 'utf8' }).trim();
    throwawayStarted = !running;
  }
  // A fresh database per run.
  const name = `vps_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(url);
  u.pathname = `/${name}`;
  const database = await openDatabase({ kind: 'postgres', url: u.toString(), poolSize: 12 });
  await migrateToLatest(database.db);
  return {
    database,
    url: u.toString(),
    stop: async () => {
      await database.close();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      if (throwawayStarted) execFileSync(script, ['stop'], { env, stdio: 'ignore' });
    },
  };
}

/**
 * Loads these relations into shared_buffers where pg_prewarm exists. Cold buffers after a kept cluster's
 * restart made single-client latencies drift between runs (BENCHMARKS.md), so the search benchmarks warm
 * the table and its indexes before timing anything.
 */
export async function prewarm(db: Kysely<DB>, relations: readonly string[]): Promise<void> {
  try {
    await sql`CREATE EXTENSION IF NOT EXISTS pg_prewarm`.execute(db);
    const t = process.hrtime.bigint();
    for (const rel of relations) await sql`SELECT pg_prewarm(${rel}::regclass)`.execute(db);
    console.error(`[bench] prewarmed ${relations.length} relations in ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)} s`);
  } catch (err) {
    console.error(`[bench] no pg_prewarm (${(err as Error).message}): the first queries read from disk`);
  }
}
