/**
 * Opens the database the configuration names: a node-postgres pool when DATABASE_URL is set,
 * otherwise the embedded PGlite. Everything above this module sees one Kysely instance for the primary
 * (`db`), and one for reads that tolerate replication lag (`reads`: routed to DATABASE_READ_URL's
 * replicas when there are any, db/read-routing.ts; otherwise `db` itself).
 */
import { Mutex } from 'async-mutex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from '../log.js';
import { metrics } from '../metrics/index.js';
import type { DB } from './types.js';
import { dbErrorFields } from './faults.js';
import { openPglite, PgliteDialect } from './pglite.js';
import { markRouted, ReadRouter, RoutedPostgresDialect } from './read-routing.js';
import { startPsqlPort, type PsqlPortOptions } from './psql-port.js';

export type DatabaseTarget =
  | {
      kind: 'postgres';
      url: string;
      poolSize?: number;
      /** statement_timeout sent as a startup parameter of every connection; 0 or unset: the server's own. */
      statementTimeoutMs?: number;
      /** How long acquiring a connection may take (connect, or wait for a pool slot); default 2 s. */
      connectTimeoutMs?: number;
      /** Streaming replicas for `reads` (each its own pool of poolSize, same timeouts); none: reads use the primary. */
      readUrls?: string[];
    }
  | {
      kind: 'pglite';
      dataDir?: string;
      /** A data directory dumped by PGlite's dumpDataDir() to start from (tests: a migrated template). */
      loadDataDir?: Blob;
      /** The loopback port for psql (0: any free port); unset: none. */
      psqlPort?: number;
      /** Password, trust and hold bound of the psql port (defaults: a generated password, 60 s). */
      psql?: Omit<PsqlPortOptions, 'port'>;
    };

export interface Database {
  /** The primary: writes, admin reads, migrations, jobs. */
  db: Kysely<DB>;
  /**
   * Reads that tolerate replication lag (search, pages, storefront product reads): the read replicas
   * when configured (with fallback to the primary and read-your-writes, db/read-routing.ts), else `db`.
   */
  reads: Kysely<DB>;
  /** The replicas' routing (health, write fence, statement counts); null without replicas. */
  readRouter: ReadRouter | null;
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
    const pool = createPool(target.url, target, log, 'PostgreSQL');
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
    // Pool use for /metrics, read at scrape time; the embedded database has no pool (one session).
    const untrack = metrics.trackDatabasePool(() => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: target.poolSize ?? 10,
    }));
    const replicas = (target.readUrls ?? []).map((url) => ({ name: hostOf(url), pool: createPool(url, target, log, 'read replica') }));
    const readRouter = replicas.length ? new ReadRouter(pool, replicas, log) : null;
    const reads = readRouter ? new Kysely<DB>({ dialect: new RoutedPostgresDialect(readRouter, pool) }) : db;
    if (reads !== db) markRouted(reads);
    const close = async () => {
      untrack();
      // The routed handle ends the replicas' pools only; the primary's pool is ended by its own handle.
      if (reads !== db) await reads.destroy();
      await db.destroy();
    };
    return { db, reads, readRouter, kind: 'postgres', psqlUrl: null, script, close };
  }
  const pglite = await openPglite(target.dataDir, target.loadDataDir, log);
  const lock = new Mutex();
  const db = new Kysely<DB>({ dialect: new PgliteDialect(pglite, lock) });
  let psql: { url: string; stop(): Promise<void> } | null = null;
  if (target.psqlPort !== undefined) {
    try {
      psql = await startPsqlPort(pglite, lock, { ...target.psql, port: target.psqlPort }, log);
    } catch (err) {
      // The service still works without the analyst port (e.g. the port is taken).
      log?.warn({ err, port: target.psqlPort }, 'could not open the psql port for the embedded database');
    }
  }
  return {
    db,
    reads: db, // one embedded session: there are no replicas
    readRouter: null,
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

type PostgresTarget = Extract<DatabaseTarget, { kind: 'postgres' }>;

/**
 * A node-postgres pool with the service's fault handling: the primary's and each replica's alike, so
 * a replica that goes away is logged and turned into DATABASE_UNAVAILABLE (db/faults.ts), never a crash.
 */
function createPool(url: string, target: PostgresTarget, log: Logger | undefined, what: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: target.poolSize ?? 10,
    // A restart or failover must fail requests fast (DATABASE_UNAVAILABLE), not queue them: a connect
    // attempt, or a wait for a pool slot, gives up after this. Once the server accepts connections again
    // the next acquire opens a fresh one, so recovery takes one round trip, not a retry interval.
    connectionTimeoutMillis: target.connectTimeoutMs ?? 2_000,
    // Idle connections are closed after a while, so few stale ones survive a failover unnoticed...
    idleTimeoutMillis: 10_000,
    // ...and TCP keepalive finds those whose peer vanished without a FIN (a failover, a dead host).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // A startup parameter, not a SET: it holds for every statement of the connection, costs no round
    // trip, and survives PgBouncer in transaction mode when PgBouncer is told to pass it on (README).
    ...(target.statementTimeoutMs ? { statement_timeout: target.statementTimeoutMs } : {}),
  });
  // Without a listener, an 'error' on a client kills the process. The pool listens on idle clients
  // only; a client checked out between two statements (a transaction waiting on an embedding, a
  // pg-boss fetch) also gets 'error' when the server goes away (57P01 admin_shutdown, a reset socket).
  // Its next query then fails (DATABASE_UNAVAILABLE) and the pool drops it on release.
  pool.on('connect', (client) => {
    client.on('error', (err) => log?.warn({ err: dbErrorFields(err) }, `${what} connection in use failed`));
  });
  // Only the error's message and codes: pg-pool sets err.client to the failed Client, and logging the
  // error whole dumps the client with all its internals (connection string included).
  pool.on('error', (err) => log?.warn({ err: dbErrorFields(err) }, `idle ${what} connection failed`));
  return pool;
}

/** host:port of a connection URL, for logs (the URL itself carries the password). */
function hostOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}`;
  } catch {
    return 'replica';
  }
}
