/**
 * pg-boss over the service's own database connection, on both backends.
 *
 * pg-boss talks to PostgreSQL through one method, executeSql(text, values). This adapter routes it
 * through Kysely (so on the embedded PGlite every statement takes the session lock like any other query,
 * and on PostgreSQL it shares the service's pool), and multi-statement scripts (pg-boss's own DDL and
 * maintenance, sent as BEGIN; …; COMMIT without parameters) through Database.script. Inside a Kysely
 * transaction the same adapter over the transaction lets a job be enqueued atomically with its row.
 * See docs/reindex.md for why this and not the psql socket.
 */
import PgBoss from 'pg-boss';
import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/connect.js';
import type { DB } from '../db/types.js';

/** pg-boss's `db` option: rows come back untyped, as pg-boss reads them by column name itself. */
export interface BossDb {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

const isScript = (text: string, values?: unknown[]) => (!values || values.length === 0) && /^\s*BEGIN\s*;/i.test(text);

export function bossDb(database: Database): BossDb {
  return {
    async executeSql(text, values) {
      if (isScript(text, values)) {
        await database.script(text);
        return { rows: [] };
      }
      const r = await database.db.executeQuery(CompiledQuery.raw(text, values ?? []));
      return { rows: r.rows };
    },
  };
}

/** The adapter over an open transaction: pg-boss statements join it (single statements only). */
export function bossTrx(trx: Transaction<DB> | Kysely<DB>): BossDb {
  return {
    async executeSql(text, values) {
      if (isScript(text, values)) throw new Error('pg-boss scripts cannot run inside a transaction');
      const r = await trx.executeQuery(CompiledQuery.raw(text, values ?? []));
      return { rows: r.rows };
    },
  };
}

export const BOSS_SCHEMA = 'pgboss';

export function createBoss(database: Database, opts: { pollIntervalMs: number }): PgBoss {
  return new PgBoss({
    db: bossDb(database),
    schema: BOSS_SCHEMA,
    migrate: true,
    supervise: true,
    schedule: false,
    pollingIntervalSeconds: Math.max(0.5, opts.pollIntervalMs / 1000),
  });
}

export { PgBoss };
