/**
 * Read replicas (DATABASE_READ_URL): a Kysely handle whose statements run on a streaming replica when one
 * may answer them, else on the primary. Search, pages and the storefront's product reads use it; writes,
 * admin reads, migrations and jobs keep the primary's own handle.
 *
 * Each statement picks its server when it acquires a connection:
 * - inside `readFromPrimary()` (requests with the admin token, a search whose model the replica has not
 *   seen activated yet): the primary;
 * - while a write fence is pending (`fenceWrites()`, called when an admin request of this process ends)
 *   and no replica has replayed the primary's WAL up to it: the primary (read-your-writes);
 * - otherwise the replicas in turn, skipping any that failed to connect in the last few seconds.
 * A replica that cannot be reached marks itself down (DOWN_MS) and the statement runs on the primary:
 * searches keep working at the primary's capacity instead of failing; only when the primary is down too
 * do they answer DATABASE_UNAVAILABLE (db/faults.ts). A statement that loses its replica connection
 * mid-way (outside a transaction) is run again on the primary: reads are safe to repeat.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  PostgresDialect,
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import type pg from 'pg';
import type { Logger } from '../log.js';
import { databaseFault, dbErrorFields } from './faults.js';

/** How long a replica that failed to connect is left out before it is tried again. */
export const DOWN_MS = 5_000;
/** How often, at most, a replica's replay position is asked while a write fence waits for it. */
const REPLAY_POLL_MS = 50;
/**
 * The longest a write fence holds. At a WAL page boundary the insert position points past the next page's
 * header while a replica's replay position stops at the last record's end, so on an idle primary the
 * replica reaches the fence only with the next WAL record; and a replica lagging this far is better
 * answered late than pinned to the primary. So a fence ends when a replica has replayed it, or after this.
 */
export const FENCE_MAX_MS = 5_000;

const preference = new AsyncLocalStorage<'primary'>();

/** Runs `fn` with every routed read on the primary (the admin's requests: they see their own writes). */
export function readFromPrimary<T>(fn: () => T): T {
  return preference.run('primary', fn);
}

const routedHandles = new WeakSet<object>();

/** Records a Kysely handle as routed to replicas (db/connect.ts). */
export function markRouted(handle: object): void {
  routedHandles.add(handle);
}

/**
 * Whether statements on `handle` may run on a replica here and now: it is routed, and the current async
 * context did not ask for the primary. Code that can tell a lagging replica from a real answer (the
 * search's model guard) asks this before paying for a second look.
 */
export function mayReadReplica(handle: object): boolean {
  return routedHandles.has(handle) && !primaryRequired();
}

/** Whether the current async context asked for the primary. */
export function primaryRequired(): boolean {
  return preference.getStore() === 'primary';
}

/** A PostgreSQL LSN ('16/B374D848') as a number of bytes; exact below 2^53 (8 PiB of WAL). */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(text.trim());
  if (!m) throw new Error(`not an LSN: ${text}`);
  return (BigInt(`0x${m[1]!}`) << 32n) + BigInt(`0x${m[2]!}`);
}

interface Replica {
  /** For logs: host:port, never the URL (it carries the password). */
  name: string;
  pool: pg.Pool;
  driver: Driver;
  downUntil: number;
  /** The last replay position read from it (pg_last_wal_replay_lsn), 0 until read. */
  replayed: bigint;
  polling: Promise<void> | null;
  lastPoll: number;
}

export interface ReadRouterStats {
  /** Statements per server since start: 'primary' or a replica's host:port. */
  statements: Record<string, number>;
  /** Statements that were to run on a replica and ran on the primary (down, mid-statement failure). */
  fallbacks: number;
}

/** Decides where each routed statement runs, and keeps the replicas' health and replay positions. */
export class ReadRouter {
  private readonly replicas: Replica[];
  private next = 0;
  /** The primary's WAL insert position after the last fenced write; 0: no fence. */
  private fence = 0n;
  private fenceUntil = 0;
  readonly stats: ReadRouterStats = { statements: { primary: 0 }, fallbacks: 0 };

  constructor(
    private readonly primaryPool: pg.Pool,
    replicaPools: Array<{ name: string; pool: pg.Pool }>,
    private readonly log?: Logger,
  ) {
    this.replicas = replicaPools.map(({ name, pool }) => ({
      name,
      pool,
      driver: new PostgresDialect({ pool }).createDriver(),
      downUntil: 0,
      replayed: 0n,
      polling: null,
      lastPoll: 0,
    }));
    for (const r of this.replicas) this.stats.statements[r.name] = 0;
  }

  get replicaNames(): string[] {
    return this.replicas.map((r) => r.name);
  }

  /** The replica the next statement should use, or null for the primary. */
  pick(): Replica | null {
    if (primaryRequired() || !this.replicas.length) return null;
    const now = Date.now();
    if (this.fence && this.fenceUntil <= now) this.fence = 0n;
    for (let i = 0; i < this.replicas.length; i++) {
      const r = this.replicas[(this.next + i) % this.replicas.length]!;
      if (r.downUntil > now) continue;
      if (this.fence > r.replayed) {
        this.pollReplay(r);
        continue;
      }
      this.next = (this.next + i + 1) % this.replicas.length;
      return r;
    }
    return null;
  }

  markDown(r: Replica, err: unknown): void {
    if (r.downUntil <= Date.now())
      this.log?.warn(
        { replica: r.name, err: dbErrorFields(err), retryInMs: DOWN_MS },
        'read replica unavailable: its reads go to the primary for now',
      );
    r.downUntil = Date.now() + DOWN_MS;
  }

  count(target: string, fallback = false): void {
    this.stats.statements[target] = (this.stats.statements[target] ?? 0) + 1;
    if (fallback) this.stats.fallbacks++;
  }

  /**
   * Read-your-writes: reads the primary's WAL insert position (which lies past every commit made so far)
   * and sends routed reads to the primary until a replica has replayed up to it. Called when a request
   * that may have written ends, before its answer is sent.
   */
  async fenceWrites(): Promise<void> {
    if (!this.replicas.length) return;
    const { rows } = await this.primaryPool.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const lsn = parseLsn(rows[0]!.lsn);
    if (lsn > this.fence) this.fence = lsn;
    this.fenceUntil = Date.now() + FENCE_MAX_MS;
    for (const r of this.replicas) if (this.fence > r.replayed) this.pollReplay(r);
  }

  /** Asks a replica how far it has replayed (at most every REPLAY_POLL_MS, in the background). */
  private pollReplay(r: Replica): void {
    if (r.polling || Date.now() - r.lastPoll < REPLAY_POLL_MS) return;
    r.lastPoll = Date.now();
    r.polling = this.readReplay(r).finally(() => {
      r.polling = null;
    });
  }

  private async readReplay(r: Replica): Promise<void> {
    try {
      const { rows } = await r.pool.query<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
      // null: not in recovery (a promoted replica, or a primary named by mistake): it has everything.
      const lsn = rows[0]?.lsn;
      r.replayed = lsn ? parseLsn(lsn) : 1n << 64n;
    } catch (err) {
      if (databaseFault(err) === 'unavailable') this.markDown(r, err);
    }
  }

  /** Waits until every replica that is up has replayed the current fence (tests, benchmarks). */
  async caughtUp(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      await Promise.all(this.replicas.map((r) => this.readReplay(r)));
      if (this.replicas.every((r) => r.downUntil > Date.now() || r.replayed >= this.fence)) return;
      if (Date.now() > until) throw new Error('the read replicas did not catch up in time');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async init(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.driver.init()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.driver.destroy()));
  }
}

/**
 * A connection of the routed handle: its statements run on the server chosen at acquisition; on a
 * replica connection that fails (outside a transaction) they run again on the primary.
 */
class RoutedConnection implements DatabaseConnection {
  inTransaction = false;
  fallback: DatabaseConnection | null = null;

  constructor(
    readonly inner: DatabaseConnection,
    readonly replica: Replica | null,
    private readonly owner: RoutingDriver,
  ) {}

  private get active(): DatabaseConnection {
    return this.fallback ?? this.inner;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    if (this.fallback || !this.replica) return this.active.executeQuery<R>(compiled);
    try {
      return await this.inner.executeQuery<R>(compiled);
    } catch (err) {
      if (this.inTransaction || databaseFault(err) !== 'unavailable') throw err;
      this.owner.router.markDown(this.replica, err);
      this.fallback = await this.owner.primary.acquireConnection();
      this.owner.router.count('primary', true);
      return this.fallback.executeQuery<R>(compiled);
    }
  }

  streamQuery<R>(compiled: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.active.streamQuery<R>(compiled, chunkSize);
  }
}

class RoutingDriver implements Driver {
  constructor(
    readonly router: ReadRouter,
    /** A driver over the primary's pool; it does not own the pool (the primary's Kysely does). */
    readonly primary: Driver,
  ) {}

  async init(): Promise<void> {
    await this.primary.init();
    await this.router.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const replica = this.router.pick();
    if (replica) {
      try {
        const conn = await replica.driver.acquireConnection();
        this.router.count(replica.name);
        return new RoutedConnection(conn, replica, this);
      } catch (err) {
        if (databaseFault(err) !== 'unavailable') throw err;
        this.router.markDown(replica, err);
        this.router.count('primary', true);
        return new RoutedConnection(await this.primary.acquireConnection(), null, this);
      }
    }
    this.router.count('primary');
    return new RoutedConnection(await this.primary.acquireConnection(), null, this);
  }

  private driverOf(conn: RoutedConnection): { driver: Driver; inner: DatabaseConnection } {
    if (conn.fallback) return { driver: this.primary, inner: conn.fallback };
    return { driver: conn.replica ? conn.replica.driver : this.primary, inner: conn.inner };
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const conn = connection as RoutedConnection;
    const { driver, inner } = this.driverOf(conn);
    await driver.beginTransaction(inner, settings);
    conn.inTransaction = true;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const conn = connection as RoutedConnection;
    const { driver, inner } = this.driverOf(conn);
    conn.inTransaction = false;
    await driver.commitTransaction(inner);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const conn = connection as RoutedConnection;
    const { driver, inner } = this.driverOf(conn);
    conn.inTransaction = false;
    await driver.rollbackTransaction(inner);
  }

  async savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    const { driver, inner } = this.driverOf(connection as RoutedConnection);
    await driver.savepoint!(inner, name, compile);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    const { driver, inner } = this.driverOf(connection as RoutedConnection);
    await driver.rollbackToSavepoint!(inner, name, compile);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    const { driver, inner } = this.driverOf(connection as RoutedConnection);
    await driver.releaseSavepoint!(inner, name, compile);
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const conn = connection as RoutedConnection;
    if (conn.fallback) await this.primary.releaseConnection(conn.fallback);
    await (conn.replica ? conn.replica.driver : this.primary).releaseConnection(conn.inner);
  }

  async destroy(): Promise<void> {
    // The primary's pool belongs to the primary handle; the replicas' pools are ended here.
    await this.router.destroy();
  }
}

/** A PostgreSQL dialect whose driver routes each connection (above); SQL compilation is PostgreSQL's. */
export class RoutedPostgresDialect extends PostgresDialect {
  constructor(
    private readonly router: ReadRouter,
    private readonly primaryPool: pg.Pool,
  ) {
    super({ pool: primaryPool });
  }

  override createDriver(): Driver {
    return new RoutingDriver(this.router, new PostgresDialect({ pool: this.primaryPool }).createDriver());
  }
}
