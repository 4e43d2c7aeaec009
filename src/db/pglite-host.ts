/**
 * The embedded database as the service sees it: PGlite in a worker thread of its own
 * (db/pglite-worker.ts), reached by messages. The main thread never runs a statement, so a long one
 * (an analyst's `pg_sleep(60)` on the psql port, a huge join) no longer stops health checks, GraphQL or
 * the other psql clients; and a statement can be ended, which PGlite itself cannot do: its WASM build
 * has no timer signal, so `statement_timeout` never fires. Ending one means terminating the thread and
 * opening the data directory again in a new one: PostgreSQL's crash recovery keeps every committed
 * transaction and rolls back the one in flight (test/security/psql-port.test.ts checks both). An
 * in-memory database (tests) would lose its data that way, so it is never interrupted.
 *
 * Callers hand the one session to one user at a time (the session lock in db/pglite.ts); the worker
 * also runs operations one after another, in order.
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { FromPgliteWorker, PgliteQueryResult, PgliteWorkerInit, PlainError, ToPgliteWorker } from './pglite-protocol.js';

const isTs = import.meta.url.endsWith('.ts');
// The inference worker's plain-JS entry (it registers tsx for a .ts entry under `npm start` and vitest).
const BOOTSTRAP = new URL('../embedding/worker-bootstrap.mjs', import.meta.url);
const ENTRY = new URL(isTs ? './pglite-worker.ts' : './pglite-worker.js', import.meta.url).href;
/** How long a clean close may take before the thread is terminated. */
const CLOSE_TIMEOUT_MS = 10_000;

/** A statement ended by its time limit (PostgreSQL's query_canceled code, as a server's statement_timeout). */
export class StatementInterruptedError extends Error {
  readonly code = '57014';
}

/** The database's own error (PostgreSQL's fields: code, detail, constraint, …) rebuilt on this side. */
function databaseError(fields: PlainError): Error {
  return Object.assign(new Error(fields.message), fields);
}

interface Pending {
  resolve(result: unknown, inTransaction: boolean): void;
  reject(err: Error): void;
  onData?: (chunk: Uint8Array) => void;
}

type Send = ToPgliteWorker extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never;

export class EmbeddedDatabase {
  private worker!: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Resolves when a worker is ready to take operations (replaced after an interruption). */
  private ready!: Promise<void>;
  private closing = false;
  private inTransaction = false;
  /** Workers terminated on purpose: their exit is not a failure. */
  private readonly retired = new WeakSet<Worker>();

  private constructor(
    private readonly init: PgliteWorkerInit,
    private readonly log: Logger | undefined,
  ) {}

  /** Opens the database in its worker: a data directory, or in memory (from a dumped one when given). */
  static async open(dataDir: string | undefined, loadDataDir?: Blob, log?: Logger): Promise<EmbeddedDatabase> {
    const db = new EmbeddedDatabase({ dataDir, loadDataDir: loadDataDir ? await loadDataDir.arrayBuffer() : undefined }, log);
    db.ready = db.spawn();
    await db.ready;
    return db;
  }

  /** Whether a statement can be ended by its time limit (a file-backed database: see the header). */
  get interruptible(): boolean {
    return this.init.dataDir !== undefined;
  }

  /** Whether the last query or exec left a transaction open (raw protocol messages are not followed). */
  isInTransaction(): boolean {
    return this.inTransaction;
  }

  async query<R>(sql: string, params: unknown[] = []): Promise<PgliteQueryResult<R>> {
    return (await this.send({ op: 'query', sql, params })) as PgliteQueryResult<R>;
  }

  async exec(sql: string): Promise<void> {
    await this.send({ op: 'exec', sql });
  }

  /**
   * One raw frontend protocol message; the backend's answers reach `onRawData` as they come. Past
   * `timeoutMs` (on an interruptible database) the statement is ended: this rejects with
   * StatementInterruptedError, and the session is a fresh one (no transaction, no settings).
   */
  async execProtocolRawStream(message: Uint8Array, opts: { onRawData: (chunk: Uint8Array) => void; timeoutMs?: number }): Promise<void> {
    const timer =
      opts.timeoutMs !== undefined && this.interruptible
        ? setTimeout(() => void this.interrupt(`a statement ran past its time limit (${opts.timeoutMs} ms)`), opts.timeoutMs)
        : null;
    try {
      await this.send({ op: 'protocol', message }, opts.onRawData);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /** The data directory as PGlite's dumpDataDir writes it (a template for in-memory test databases). */
  async dumpDataDir(): Promise<Blob> {
    return new Blob([(await this.send({ op: 'dump' })) as ArrayBuffer]);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.ready.catch(() => undefined);
    const exited = once(this.worker, 'exit');
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_TIMEOUT_MS);
    try {
      await this.send({ op: 'close' }, undefined, true);
    } catch {
      void this.worker.terminate();
    }
    await exited;
    clearTimeout(timer);
  }

  private async send(msg: Send, onData?: (chunk: Uint8Array) => void, closing = false): Promise<unknown> {
    if (this.closing && !closing) throw new Error('the embedded database is closed');
    await this.ready;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (result, inTransaction) => {
          this.inTransaction = inTransaction;
          resolve(result);
        },
        reject,
        ...(onData ? { onData } : {}),
      });
      // Kept alive only while it works: an idle database does not hold the process open.
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ ...msg, id });
    });
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    return p;
  }

  private spawn(): Promise<void> {
    const worker = new Worker(BOOTSTRAP, { workerData: { ...this.init, __entry: ENTRY } });
    this.worker = worker;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (msg: FromPgliteWorker) => {
        switch (msg.type) {
          case 'ready':
            worker.unref();
            resolve();
            break;
          case 'failed':
            reject(databaseError(msg.error));
            break;
          case 'data':
            this.pending.get(msg.id)?.onData?.(msg.chunk);
            break;
          case 'done':
            this.settle(msg.id)?.resolve(msg.result, msg.inTransaction);
            break;
          case 'error':
            this.inTransaction = msg.inTransaction;
            this.settle(msg.id)?.reject(databaseError(msg.error));
            break;
        }
      });
      worker.on('error', (err) => {
        this.log?.error({ err }, 'embedded database worker failed');
        reject(err);
      });
      worker.on('exit', (code) => {
        reject(new Error(`the embedded database's worker exited (${code}) before it was ready`));
        if (this.retired.has(worker) || this.closing) return; // replaced on purpose, or closed
        // It died on its own (out of memory, a WASM trap): what was in flight failed; a file-backed
        // database is opened again (crash recovery), an in-memory one is gone.
        this.failPending(new Error('the embedded database stopped unexpectedly'));
        if (this.interruptible) {
          this.log?.error({ code }, 'embedded database worker exited; opening the data directory again');
          this.ready = this.spawn();
          this.ready.catch((err: unknown) => this.log?.error({ err }, 'embedded database could not be opened again'));
        } else {
          this.ready = Promise.reject(new Error('the embedded (in-memory) database stopped'));
          this.ready.catch(() => undefined);
        }
      });
    });
  }

  private failPending(err: Error) {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.inTransaction = false;
    for (const p of all) p.reject(err);
  }

  /** Ends whatever runs by replacing the worker; the data directory is recovered by the new one. */
  private async interrupt(reason: string) {
    if (this.closing) return;
    this.log?.warn({ reason }, 'embedded database: ending the running statement (the worker is replaced)');
    const old = this.worker;
    this.retired.add(old);
    let done!: () => void;
    this.ready = new Promise<void>((r) => (done = r));
    this.failPending(new StatementInterruptedError(`canceling statement due to statement timeout: ${reason}`));
    await old.terminate();
    const next = this.spawn();
    next.then(done, (err: unknown) => {
      this.log?.error({ err }, 'embedded database could not be opened again after an interruption');
      done();
    });
    this.ready = next;
  }
}
