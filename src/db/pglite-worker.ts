/**
 * The worker thread that owns the embedded database (PGlite + pgvector): the service's main thread
 * only sends it messages (db/pglite-host.ts). PGlite runs a statement to its end without yielding and
 * its WASM build has no working statement_timeout, so on the main thread one long statement stopped
 * the whole service (health checks included). Here it stops only this thread, and the host can end it
 * by terminating the thread (docs/ARCHITECTURE.md, "The embedded database's psql port").
 *
 * Operations run one at a time, in the order they arrive.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { plainError, type FromPgliteWorker, type PgliteWorkerInit, type ToPgliteWorker } from './pglite-protocol.js';

const port = parentPort!;
const init = workerData as PgliteWorkerInit;
const post = (msg: FromPgliteWorker, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);

let pg: PGlite;
try {
  pg = await PGlite.create(init.dataDir, {
    extensions: { vector },
    ...(init.loadDataDir ? { loadDataDir: new Blob([init.loadDataDir]) } : {}),
  });
  post({ type: 'ready' });
} catch (err) {
  post({ type: 'failed', error: plainError(err) });
  process.exit(1);
}

async function run(msg: ToPgliteWorker): Promise<unknown> {
  switch (msg.op) {
    case 'query': {
      const res = await pg.query(msg.sql, msg.params);
      return { rows: res.rows, affectedRows: res.affectedRows };
    }
    case 'exec':
      await pg.exec(msg.sql);
      return null;
    case 'protocol':
      // Not inside PGlite's query lock: the host hands the session to one user at a time.
      await pg.execProtocolRawStream(msg.message, {
        onRawData: (chunk) => post({ type: 'data', id: msg.id, chunk: chunk.slice() }),
      });
      return null;
    case 'dump': {
      const file = await pg.dumpDataDir('none');
      return await file.arrayBuffer();
    }
    case 'close':
      await pg.close();
      return null;
  }
}

/** After close() PGlite has no session left to ask. */
const inTransaction = (msg: ToPgliteWorker) => msg.op !== 'close' && pg.isInTransaction();

let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: ToPgliteWorker) => {
  queue = queue.then(async () => {
    try {
      const result = await run(msg);
      post({ type: 'done', id: msg.id, result, inTransaction: inTransaction(msg) }, result instanceof ArrayBuffer ? [result] : []);
    } catch (err) {
      post({ type: 'error', id: msg.id, error: plainError(err), inTransaction: inTransaction(msg) });
    }
    if (msg.op === 'close') port.close();
  });
});
