/**
 * Messages between the service (db/pglite-host.ts) and the worker thread that owns the embedded
 * database (db/pglite-worker.ts). Everything crosses by structured clone: rows keep their Dates,
 * Uint8Arrays and bigints; errors cross as plain fields (their class does not survive the clone).
 */

export interface PgliteWorkerInit {
  /** The data directory (a file-backed database); undefined: in memory. */
  dataDir: string | undefined;
  /** A dumped data directory (PGlite's dumpDataDir) to start an in-memory database from. */
  loadDataDir: ArrayBuffer | undefined;
}

export type ToPgliteWorker =
  | { id: number; op: 'query'; sql: string; params: unknown[] }
  | { id: number; op: 'exec'; sql: string }
  /** One raw frontend protocol message (the psql port); its answers come back as 'data' chunks. */
  | { id: number; op: 'protocol'; message: Uint8Array }
  | { id: number; op: 'dump' }
  | { id: number; op: 'close' };

/** An error's own fields (message, PostgreSQL's code, detail, constraint, …). */
export type PlainError = { message: string } & Record<string, string | number | undefined>;

export type FromPgliteWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: PlainError }
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'done'; id: number; result: unknown; inTransaction: boolean }
  | { type: 'error'; id: number; error: PlainError; inTransaction: boolean };

export interface PgliteQueryResult<R> {
  rows: R[];
  affectedRows?: number;
}

/** The error's enumerable string and number fields, which is all a DatabaseError carries. */
export function plainError(err: unknown): PlainError {
  if (!(err instanceof Error)) return { message: String(err) };
  const out: PlainError = { message: err.message, name: err.name };
  for (const [key, value] of Object.entries(err)) if (typeof value === 'string' || typeof value === 'number') out[key] = value;
  return out;
}
