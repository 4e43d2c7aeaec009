/**
 * The embedded database's psql port cannot break or take over the service (issue 11, item 8): it asks
 * for a password, can be turned off, resets the session when a client leaves, and cuts off a client
 * that holds the single session past the bound.
 *
 * @backend the embedded database's psql port
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openConfiguredDatabase } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createLogger } from '../../src/log.js';

const count = async (database: Database, sku: string) =>
  (await database.db.selectFrom('products').select('sku').where('sku', '=', sku).execute()).length;

const insert = (sku: string) => `INSERT INTO products (sku, title, category) VALUES ('${sku}', 't', 'psql')`;

/** Resolves with the error a client gets (its 'error' event or a failed query), or null within `ms`. */
function nextError(client: pg.Client, ms: number): Promise<Error | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    client.once('error', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

describe('psql port of the embedded database', () => {
  let database: Database;
  beforeAll(async () => {
    database = await openDatabase({ kind: 'pglite', psqlPort: 0, psql: { password: 'a-test-password-123', maxHoldMs: 800 } });
    await migrateToLatest(database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  const withPassword = (password: string | undefined) => {
    const url = new URL(database.psqlUrl!);
    url.password = password ?? '';
    return url.toString();
  };

  it('prints a URL with the password and lets a client in with it', async () => {
    expect(database.psqlUrl).toMatch(/^postgresql:\/\/postgres:a-test-password-123@127\.0\.0\.1:\d+\/postgres/);
    const c = new pg.Client({ connectionString: database.psqlUrl! });
    await c.connect();
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });

  it('refuses a wrong password and no password', async () => {
    const wrong = new pg.Client({ connectionString: withPassword('not-the-password') });
    await expect(wrong.connect()).rejects.toMatchObject({ code: '28P01' });
    const none = new pg.Client({
      host: '127.0.0.1',
      port: Number(new URL(database.psqlUrl!).port),
      user: 'postgres',
      database: 'postgres',
    });
    await expect(none.connect()).rejects.toThrow();
    // The service is unaffected.
    expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(database.db)).rows).toEqual([{ one: 1 }]);
  });

  it('rolls back and resets the session of a client that leaves mid-transaction', async () => {
    const before = (await sql<{ search_path: string }>`SHOW search_path`.execute(database.db)).rows[0]!.search_path;
    const c = new pg.Client({ connectionString: database.psqlUrl! });
    c.on('error', () => {});
    await c.connect();
    await c.query(`SET search_path = nowhere`); // session state that would break the service's queries
    await c.query('BEGIN');
    await c.query(`INSERT INTO public.products (sku, title, category) VALUES ('left-mid-tx', 't', 'psql')`);
    // The client vanishes without ROLLBACK or Terminate.
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    // The service's next statement runs after the reset: the row is gone, search_path is the default.
    expect(await count(database, 'left-mid-tx')).toBe(0);
    const shown = await sql<{ search_path: string }>`SHOW search_path`.execute(database.db);
    expect(shown.rows[0]!.search_path).toBe(before);
    expect(before).not.toBe('nowhere');
  });

  it('cuts off a client that holds the session past the bound; the service goes on', async () => {
    const c = new pg.Client({ connectionString: database.psqlUrl! });
    await c.connect();
    await c.query('BEGIN');
    await c.query(insert('held-too-long'));
    c.on('error', () => {}); // after the first error below, the closed socket reports again
    const started = Date.now();
    const cut = nextError(c, 5000);
    // The service's statement waits for the psql transaction, but only up to the bound.
    expect(await count(database, 'held-too-long')).toBe(0);
    expect(Date.now() - started).toBeLessThan(3000);
    const err = await cut;
    expect(err?.message ?? '').toMatch(/PGLITE_PSQL_MAX_HOLD_MS|terminated/i);
    // A new client gets in and the service still writes.
    const again = new pg.Client({ connectionString: database.psqlUrl! });
    await again.connect();
    await again.query(insert('after-cut'));
    await again.end();
    expect(await count(database, 'after-cut')).toBe(1);
  });

  it('lets a short transaction through untouched', async () => {
    const c = new pg.Client({ connectionString: database.psqlUrl! });
    await c.connect();
    await c.query('BEGIN');
    await c.query(insert('committed-by-psql'));
    await c.query('COMMIT');
    await c.end();
    expect(await count(database, 'committed-by-psql')).toBe(1);
  });
});

describe('psql port settings', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-psql-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const log = createLogger('silent');

  it('is off with PGLITE_PSQL_PORT=off or empty', async () => {
    for (const value of ['off', '']) {
      const config = loadConfig({ DATA_DIR: dir, PGLITE_PSQL_PORT: value });
      expect(config.database.kind === 'pglite' && config.database.psql?.off).toBe(true);
      const database = await openConfiguredDatabase(config, log, { purpose: 'service' });
      try {
        expect(database.psqlUrl).toBeNull();
      } finally {
        await database.close();
      }
    }
  });

  it('generates a password when none is configured, and trusts only when asked (not in production)', async () => {
    const generated = await openConfiguredDatabase(loadConfig({ DATA_DIR: dir, PGLITE_PSQL_PORT: '0' }), log, { purpose: 'service' });
    try {
      expect(new URL(generated.psqlUrl!).password.length).toBeGreaterThanOrEqual(16);
    } finally {
      await generated.close();
    }
    const trusted = await openConfiguredDatabase(loadConfig({ DATA_DIR: dir, PGLITE_PSQL_PORT: '0', PGLITE_PSQL_TRUST: 'true' }), log);
    try {
      expect(new URL(trusted.psqlUrl!).password).toBe('');
      const c = new pg.Client({ connectionString: trusted.psqlUrl! });
      await c.connect();
      await c.end();
    } finally {
      await trusted.close();
    }
    expect(() => loadConfig({ PGLITE_PSQL_TRUST: 'true', NODE_ENV: 'production' })).toThrow(/PGLITE_PSQL_TRUST/);
  });
});
