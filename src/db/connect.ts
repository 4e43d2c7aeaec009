/**
 * Opens the database the configuration names: a node-postgres pool when DATABASE_URL is set,
 * otherwise the embedded PGlite. Everything above this module sees one Kysely instance.
 */
import { Mutex } from 'async-mutex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from '../log.js';
import type { DB } from './types.js';
import { openPglite, PgliteDialect, startPsqlPort } from './pglite.js';

export type DatabaseTarget = { kind: 'postgres'; url: string; poolSize?: number } | { kind: 'pglite'; dataDir?: string; psqlPort?: number };

export interface Database {
  db: Kysely<DB>;
  kind: 'postgres' | 'pglite';
  /** Where an analyst points psql (embedded database only; null when not served). */
  psqlUrl: string | null;
  /**
   * Runs a multi-statement SQL script (simple protocol, no parameters) on one session, rolling back
   * a transaction the script left open on error. For libraries that ship their own DDL (pg-boss).
   */
  script(text: string): Promise<void>;
  close(): Promise<void>;
}

// int8 (bigint ids, counts) as strings: ids go out as GraphQL IDs, so no precision is lost.
// numeric stays a string too and is converted where it is read.

export async function openDatabase(target: DatabaseTarget, log?: Logger): Promise<Database> {
  if (target.kind === 'postgres') {
    const pool = new pg.Pool({ connectionString: target.url, max: target.poolSize ?? 10 });
    pool.on('error', (err) => log?.error({ err }, 'idle PostgreSQL connection failed'));
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    const script = async (text: string) => {
      const client = await pool.connect();
      try {
        await client.query(text);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    };
    return { db, kind: 'postgres', psqlUrl: null, script, close: () => db.destroy() };
  }
  const pglite = await openPglite(target.dataDir);
  const lock = new Mutex();
  const db = new Kysely<DB>({ dialect: new PgliteDialect(pglite, lock) });
  let psql: { url: string; stop(): Promise<void> } | null = null;
  if (target.psqlPort !== undefined) {
    try {
      psql = await startPsqlPort(pglite, lock, target.psqlPort);
    } catch (err) {
      // The service still works without the analyst port (e.g. the port is taken).
      log?.warn({ err, port: target.psqlPort }, 'could not open the psql port for the embedded database');
    }
  }
  return {
    db,
    kind: 'pglite',
    psqlUrl: psql?.url ?? null,
    script: (text) =>
      lock.runExclusive(async () => {
        try {
          await pglite.exec(text);
        } catch (err) {
          if (pglite.isInTransaction()) await pglite.exec('ROLLBACK');
          throw err;
        }
      }),
    close: async () => {
      await psql?.stop();
      await db.destroy();
    },
  };
}
