/**
 * The embedded default database: PGlite (PostgreSQL compiled to WASM) with pgvector.
 *
 * PGlite is a single PostgreSQL session. Two concurrent requests that each run a transaction
 * would otherwise interleave their statements inside one another's BEGIN…COMMIT. A session lock
 * serialises them: the Kysely driver holds it from acquiring a connection to releasing it (which
 * spans a whole transaction), and the psql port for analysts takes the same lock, holding it for
 * as long as a psql client keeps a transaction open.
 */
import fs from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
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

export async function openPglite(dataDir: string | undefined): Promise<PGlite> {
  if (dataDir) await fs.mkdir(dataDir, { recursive: true });
  // undefined dataDir: an in-memory database (tests).
  return PGlite.create(dataDir, { extensions: { vector } });
}

class PgliteConnection implements DatabaseConnection {
  constructor(private readonly pg: PGlite) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const res = await this.pg.query<R>(compiled.sql, [...compiled.parameters]);
    const affected = res.affectedRows;
    return {
      rows: res.rows,
      ...(affected !== undefined && compiled.query.kind !== 'SelectQueryNode' ? { numAffectedRows: BigInt(affected) } : {}),
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on the embedded database');
  }
}

class PgliteDriver implements Driver {
  private readonly connection: PgliteConnection;
  private readonly releasers = new Map<DatabaseConnection, () => void>();

  constructor(
    private readonly pg: PGlite,
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

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const release = this.releasers.get(connection);
    this.releasers.delete(connection);
    release?.();
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
    private readonly pg: PGlite,
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

/**
 * A view of the PGlite instance for the psql socket server that takes the session lock.
 * The socket server calls runExclusive once per protocol message; when a message leaves a
 * transaction open (psql BEGIN), the lock stays held until a later message (or the ROLLBACK the
 * server issues when the client goes away) ends it, so app statements never run inside it.
 */
function lockedView(pg: PGlite, lock: Mutex): PGlite {
  let held: (() => void) | undefined;
  const settle = () => {
    if (held && !pg.isInTransaction()) {
      const release = held;
      held = undefined;
      release();
    }
  };
  const runLocked = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (!held) held = await lock.acquire();
    try {
      return await fn();
    } finally {
      settle();
    }
  };
  return new Proxy(pg, {
    get(target, prop, receiver) {
      if (prop === 'runExclusive') return <T>(fn: () => Promise<T>) => runLocked(() => target.runExclusive(fn));
      if (prop === 'exec') return (q: string) => runLocked(() => target.exec(q));
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Serves the embedded database on a loopback port so analysts can connect with psql. */
export async function startPsqlPort(pg: PGlite, lock: Mutex, port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const server = new PGLiteSocketServer({
    db: lockedView(pg, lock),
    host: '127.0.0.1',
    port,
    maxConnections: 4,
    // An idle psql session is closed (rolling back an open transaction) so it cannot hold the
    // session lock, and with it the service, forever.
    idleTimeout: 5 * 60_000,
  });
  await server.start();
  const bound = Number(server.getServerConn().split(':').pop()); // the real port when asked for port 0
  return {
    url: `postgresql://postgres@127.0.0.1:${bound}/postgres?sslmode=disable`,
    stop: () => server.stop(),
  };
}
