/** Where the search benchmark runs: a native PostgreSQL (BENCH_DATABASE_URL or a throwaway cluster) or PGlite. */
import { execFileSync } from 'node:child_process';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import pg from 'pg';

export async function benchDatabase(
  backend: 'postgres' | 'pglite',
): Promise<{ database: Database; url: string | null; stop: () => Promise<void> }> {
  if (backend === 'pglite') {
    const database = await openDatabase({ kind: 'pglite' });
    await migrateToLatest(database.db);
    return { database, url: null, stop: () => database.close() };
  }
  let url = process.env.BENCH_DATABASE_URL;
  let throwaway = false;
  const env = { ...process.env, PG_THROWAWAY_STATE: process.env.PG_THROWAWAY_STATE ?? '.cache/pg-bench' };
  if (!url) {
    // Stop the cluster afterwards only if this run started it.
    let running = true;
    try {
      execFileSync('scripts/pg-throwaway.sh', ['status'], { env, stdio: 'ignore' });
    } catch {
      running = false;
    }
    url = execFileSync('scripts/pg-throwaway.sh', ['start'], { env, encoding: 'utf8' }).trim();
    throwaway = !running;
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
      if (throwaway) execFileSync('scripts/pg-throwaway.sh', ['stop'], { env, stdio: 'ignore' });
    },
  };
}
