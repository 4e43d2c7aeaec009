/**
 * The payload worker's thread (payload-worker.ts): a large request payload in, the value the main thread
 * needs out, computed by the same functions the main thread uses for small ones. Pure JavaScript:
 * terminating it is always safe.
 */
import { parentPort, workerData } from 'node:worker_threads';
import secureJson from 'secure-json-parse';
import { lowerThisThread } from '../admission/thread-priority.js';
import { validateBase64 } from '../catalog/validate.js';
import { AppError, ErrorCode } from '../errors.js';
import { decodeBase64Image } from '../images/source.js';
import { holdImageStrings } from './held-images.js';
import {
  HELD_IMAGE_PREFIX,
  OFFLOAD_MIN_BYTES,
  type PayloadFromWorker,
  type PayloadToWorker,
  type PayloadWorkerInit,
} from './payload-protocol.js';

const init = workerData as PayloadWorkerInit;
const { threadNice } = init;
/** The served schema's SDL: photos of JSON bodies are held by it (held-images.ts); none before it comes. */
let sdl = init.sdl;
lowerThisThread(threadNice);
const port = parentPort!;
/** Fastify's defaults (onProtoPoisoning and onConstructorPoisoning: 'error'). */
const JSON_RULES = { protoAction: 'error', constructorAction: 'error' } as const;

/**
 * Images held from parsed bodies (held-images.ts), until their request ends (release) or, should a
 * release never come (a bug, a lost message), HELD_TTL_MS after they arrived.
 */
const held = new Map<number, { text: string; at: number }>();
let nextHandle = 1;
const HELD_TTL_MS = 10 * 60_000;
setInterval(() => {
  const old = Date.now() - HELD_TTL_MS;
  for (const [handle, h] of held) if (h.at < old) held.delete(handle);
}, 60_000).unref();

function heldText(handle: number): string {
  const h = held.get(handle);
  if (!h) throw new AppError(ErrorCode.REQUEST_ABORTED, 'The request this image came with has already ended');
  return h.text;
}

function reply(msg: PayloadFromWorker): void {
  port.postMessage(msg);
}

/** Decoded bytes, transferred when they own their buffer (a large decode does; a small one sits in Node's pool). */
function replyBytes(id: number, bytes: Buffer): void {
  const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength;
  const buffer = owned ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
  port.postMessage({ id, bytes: buffer } satisfies PayloadFromWorker, [buffer]);
}

port.on('message', (msg: PayloadToWorker) => {
  if (msg.op === 'release') {
    for (const handle of msg.handles) held.delete(handle);
    return;
  }
  if (msg.op === 'schema') {
    sdl = msg.sdl;
    return;
  }
  if (msg.op === 'json') {
    let value: unknown;
    try {
      value = secureJson.parse(Buffer.from(msg.bytes).toString('utf8'), undefined, JSON_RULES) as unknown;
    } catch {
      reply({ id: msg.id, invalidJson: true });
      return;
    }
    const handles: number[] = [];
    if (sdl)
      holdImageStrings(value, sdl, OFFLOAD_MIN_BYTES, (text) => {
        const handle = nextHandle++;
        held.set(handle, { text, at: Date.now() });
        handles.push(handle);
        return `${HELD_IMAGE_PREFIX}${handle}`;
      });
    reply({ id: msg.id, value, held: handles });
    return;
  }
  try {
    if (msg.op === 'takeHeld') reply({ id: msg.id, text: heldText(msg.handle) });
    else if (msg.op === 'decodeHeld') replyBytes(msg.id, decodeBase64Image(validateBase64(msg.field, heldText(msg.handle)), msg.maxBytes));
    else replyBytes(msg.id, decodeBase64Image(validateBase64(msg.field, msg.base64), msg.maxBytes));
  } catch (err) {
    if (!(err instanceof AppError)) throw err; // a bug: the worker dies, the caller gets an error
    reply({ id: msg.id, error: { code: err.code, message: err.message, details: err.details } });
  }
});
