/**
 * The payload worker's thread (payload-worker.ts): a large request payload in, the value the main thread
 * needs out, computed by the same functions the main thread uses for small ones. Pure JavaScript:
 * terminating it is always safe.
 */
import { parentPort, workerData } from 'node:worker_threads';
import secureJson from 'secure-json-parse';
import { lowerThisThread } from '../admission/thread-priority.js';
import { validateBase64 } from '../catalog/validate.js';
import { AppError } from '../errors.js';
import { decodeBase64Image } from '../images/source.js';
import type { PayloadFromWorker, PayloadToWorker, PayloadWorkerInit } from './payload-protocol.js';

const { threadNice } = workerData as PayloadWorkerInit;
lowerThisThread(threadNice);
const port = parentPort!;
/** Fastify's defaults (onProtoPoisoning and onConstructorPoisoning: 'error'). */
const JSON_RULES = { protoAction: 'error', constructorAction: 'error' } as const;

port.on('message', (msg: PayloadToWorker) => {
  if (msg.op === 'json') {
    let reply: PayloadFromWorker;
    try {
      reply = { id: msg.id, value: secureJson.parse(Buffer.from(msg.bytes).toString('utf8'), undefined, JSON_RULES) as unknown };
    } catch {
      reply = { id: msg.id, invalidJson: true };
    }
    port.postMessage(reply);
    return;
  }
  try {
    const bytes = decodeBase64Image(validateBase64(msg.field, msg.base64), msg.maxBytes);
    // A large decode owns its whole ArrayBuffer: hand it over; a small one sits in Node's pool: copy it.
    const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength;
    const buffer = owned ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
    port.postMessage({ id: msg.id, bytes: buffer } satisfies PayloadFromWorker, [buffer]);
  } catch (err) {
    if (!(err instanceof AppError)) throw err; // a bug: the worker dies, the caller gets an error
    port.postMessage({ id: msg.id, error: { code: err.code, message: err.message, details: err.details } } satisfies PayloadFromWorker);
  }
});
