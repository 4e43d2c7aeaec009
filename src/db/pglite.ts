/**
 * The embedded default database: PGlite (PostgreSQL compiled to WASM) with pgvector, in a worker thread
 * of its own (db/pglite-host.ts), as a Kysely dialect.
 *
 * PGlite is a single PostgreSQL session. Two concurrent requests that each run a transaction
 * would otherwise interleave their statements inside one another's BEGIN…COMMIT. A session lock
 * serialises them: the Kysely driver holds it from acquiring a connection to releasing it (which
 * spans a whole transaction), and the psql port for analysts (psql-port.ts) takes the same lock,
 * holding it for as long as a psql client keeps a transaction open (within a bound).
 */
import fs from 'node:fs/promises';
import { Mutex } from 'async-mutex';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from 'kysely';
import type { Logger } from '../log.js';
import { EmbeddedDatabase } from './pglite-host.js';

export async function openPglite(dataDir: string | undefined, loadDataDir?: Blob, log?: Logger): Promise<EmbeddedDatabase> {
  if (dataDir) await fs.mkdir(dataDir, { recursive: true });
  // undefined dataDir: an in-memory database (tests), from a dumped data directory when given one.
  return EmbeddedDatabase.open(dataDir, loadDataDir, log);
}

class PgliteConnection implements DatabaseConnection {
  constructor(private readonly pg: EmbeddedDatabase) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const res = await this.pg.query<R>(compiled.sql, [...compiled.parameters]);
    const affected = res.affectedRows;
    return {
      rows: res.rows,
      ...(affected !== undefined && compiled.query.kind !== 'SelectQueryNode' ? { numAffectedRows: BigInt(affected) } : {}),
    };
  }

  // eslint-disable-next-line require-yield, @typescript-eslint/require-await -- Kysely's Driver interface wants an async generator
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on the embedded database');
  }
}

class PgliteDriver implements Driver {
  private readonly connection: PgliteConnection;
  private readonly releasers = new Map<DatabaseConnection, () => void>();

  constructor(
    private readonly pg: EmbeddedDatabase,
    private readonly lock: Mutex,
  ) {
    this.connection = new PgliteConnection(pg);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.lock.acquire();
    this.releasers.set(this.connection, release);
    return this.connection;
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const release = this.releasers.get(connection);
    this.releasers.delete(connection);
    release?.();
    return Promise.resolve();
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('BEGIN'));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }

  async destroy(): Promise<void> {
    await this.lock.runExclusive(() => this.pg.close());
  }
}

export class PgliteDialect implements Dialect {
  constructor(
    private readonly pg: EmbeddedDatabase,
    private readonly lock: Mutex,
  ) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PgliteDriver(this.pg, this.lock);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
}
