/**
 * Preprocessing worker: full-resolution RGB → the vision tower's input (the Pillow-identical squash and
 * normalisation of preprocess.ts, or NaFlex patches), off the main thread. Pure JavaScript, no native
 * calls, so terminating it is always safe. Results are transferred back, not copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { lowerThisThread } from '../admission/thread-priority.js';
import { naflexPreprocess } from './naflex.js';
import { preprocessRgb } from './preprocess.js';
import type { PreprocessFromWorker, PreprocessToWorker, PreprocessWorkerInit } from './protocol.js';

const { spec, threadNice } = workerData as PreprocessWorkerInit;
const port = parentPort!;
lowerThisThread(threadNice ?? 0); // serving first (admission/thread-priority.ts)

port.on('message', (msg: PreprocessToWorker) => {
  if (msg.crash) {
    // test hook: an uncaught error, as a real bug in this thread would be
    setImmediate(() => {
      throw new Error('simulated preprocess worker crash');
    });
    return;
  }
  try {
    const img = { data: msg.data, width: msg.width, height: msg.height };
    let reply: PreprocessFromWorker;
    if (spec.naflex) {
      const x = naflexPreprocess(img, spec, spec.naflex);
      reply = { type: 'naflex', id: msg.id, pixels: x.pixels, mask: x.mask, rows: x.rows, cols: x.cols };
      port.postMessage(reply, [x.pixels.buffer as ArrayBuffer, x.mask.buffer as ArrayBuffer]);
    } else {
      const t = preprocessRgb(img, spec);
      reply = { type: 'tensor', id: msg.id, data: t };
      port.postMessage(reply, [t.buffer as ArrayBuffer]);
    }
  } catch (err) {
    port.postMessage({
      type: 'error',
      id: msg.id,
      message: err instanceof Error ? err.message : String(err),
    } satisfies PreprocessFromWorker);
  }
});
