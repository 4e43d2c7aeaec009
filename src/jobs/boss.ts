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
import { databaseFault } from '../db/faults.js';
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

let faultGuardInstalled = false;

/**
 * pg-boss 10 marks a finished job done or failed without awaiting the call (manager.js: `this.complete(…)`
 * and `this.fail(…)` after the worker's callback), so when the database is down at that moment the
 * rejection is unhandled and Node ends the process. The rejection is absorbed here only when it is a
 * database fault: the job row stays active in pg-boss, expires, and is fetched again; the reindex job's
 * own lease and fence (docs/reindex.md) keep it from running twice. Any other unhandled rejection still
 * ends the process as Node's default does.
 */
export function absorbDatabaseFaultRejections(onFault: (err: unknown) => void): void {
  if (faultGuardInstalled) return;
  faultGuardInstalled = true;
  process.on('unhandledRejection', (reason) => {
    if (databaseFault(reason) !== null) {
      onFault(reason);
      return;
    }
    throw reason; // as without a handler: an uncaught exception
  });
}

export function createBoss(database: Database, opts: { pollIntervalMs: number; onFault?: (err: unknown) => void }): PgBoss {
  absorbDatabaseFaultRejections(opts.onFault ?? (() => {}));
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
