/**
 * What a large request payload costs the CPU, off the main thread: parsing a JSON body of a MiB or more
 * (json-body.ts), and validating and decoding a base64 image of a MiB or more (resolvers/inputs.ts).
 *
 * Why: the main thread answers every request, and a request carrying three 24 MP phone photos in base64
 * (a 21 MB body) held it for 150–390 ms at a time (a CPU profile of the service under the reliability
 * bench's photo flood, this machine: JSON.parse 50–60 ms, then per photo the base64 checks, two regular
 * expressions over 6.4 MB, 25 ms, and the decode 5 ms); every other client's request waited behind it.
 * Here the main thread hands the bytes over (a body is transferred; a string is copied, about 1 ms for
 * 6 MB) and takes the result back (decoded bytes are transferred).
 *
 * A JSON body's photos do not come back at all (holdImagesIn, held-images.ts): the worker keeps each
 * photo-sized ImageInput.base64 string and the parsed value carries a short stand-in, which the
 * resolvers hand back to be decoded here (decodeHeld). Why: cloning three 6.4 MB strings to the main
 * thread and back to be decoded, and the major collections those strings then cost the main thread's
 * heap (15–30 ms each), were what remained of the flood's cost to other clients. The photos are dropped
 * when their request ends (release, from json-body.ts's hooks).
 *
 * One thread for the process, started with the first large payload, lowered in CPU priority as the other
 * compute threads are (admission/thread-priority.ts), replaced when it dies (its callers get an error).
 * The functions it runs are the main thread's own (catalog/validate.ts, images/source.ts, secure-json-parse
 * as Fastify uses it), so a caller cannot tell which thread served it.
 */
import { Worker } from 'node:worker_threads';
import { errorCodes } from 'fastify';
import { computeThreadNice } from '../admission/thread-priority.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { PayloadFromWorker, PayloadToWorker, PayloadWorkerInit } from './payload-protocol.js';

export { OFFLOAD_MIN_BYTES, heldImageHandle } from './payload-protocol.js';

const isTs = import.meta.url.endsWith('.ts');
const BOOTSTRAP = new URL('../embedding/worker-bootstrap.mjs', import.meta.url);
const ENTRY = new URL(isTs ? './payload-thread.ts' : './payload-thread.js', import.meta.url).href;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

class PayloadWorker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Payloads handled on the thread (for tests). */
  handled = 0;

  /** The served schema's SDL, once the service has one: the worker holds photos of JSON bodies by it. */
  private sdl: string | null = null;

  /**
   * From now on, a JSON body's photo-sized ImageInput.base64 strings stay on the worker (held-images.ts),
   * and the main thread gets a stand-in for each (heldImageHandle) that decodeHeld() or takeHeld() reads.
   * `sdl` is the served schema's source (its input types say where photos are): sent to the thread once,
   * at its start or now if it runs, and built into a schema there once.
   */
  holdImagesIn(sdl: string): void {
    if (sdl === this.sdl) return;
    this.sdl = sdl;
    this.worker?.postMessage({ id: 0, op: 'schema', sdl } satisfies PayloadToWorker);
  }

  /**
   * A JSON body, by Fastify's rules (FST_ERR_CTP_INVALID_JSON_BODY where Fastify's parser would say so),
   * and the handles of the photos held from it, to release() when its request ends.
   */
  async parseJson(body: Buffer): Promise<{ value: unknown; held: number[] }> {
    // A large Buffer.concat result owns its whole ArrayBuffer: hand it over; anything else is copied.
    const owned = body.byteOffset === 0 && body.buffer.byteLength === body.byteLength;
    const bytes = owned ? (body.buffer as ArrayBuffer) : new Uint8Array(body).buffer;
    return (await this.send({ id: 0, op: 'json', bytes }, [bytes])) as { value: unknown; held: number[] };
  }

  /** validateBase64 then decodeBase64Image, with their errors. */
  async decodeBase64(field: string, base64: string, maxBytes: number): Promise<Buffer> {
    const bytes = (await this.send({ id: 0, op: 'base64', field, base64, maxBytes })) as ArrayBuffer;
    return Buffer.from(bytes);
  }

  /** decodeBase64() of a held photo (REQUEST_ABORTED once its request has ended). */
  async decodeHeld(field: string, handle: number, maxBytes: number): Promise<Buffer> {
    const bytes = (await this.send({ id: 0, op: 'decodeHeld', handle, field, maxBytes })) as ArrayBuffer;
    return Buffer.from(bytes);
  }

  /** A held photo's base64 text, for a consumer that takes the text (ingest validates it in its own words). */
  async takeHeld(handle: number): Promise<string> {
    return (await this.send({ id: 0, op: 'takeHeld', handle })) as string;
  }

  /** The request the photos came with has ended: the worker drops them. */
  release(handles: readonly number[]): void {
    // A worker that died (or was replaced) has dropped them already.
    if (handles.length) this.worker?.postMessage({ id: 0, op: 'release', handles: [...handles] } satisfies PayloadToWorker);
  }

  private send(msg: PayloadToWorker, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    this.handled++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref(); // work in flight keeps the process alive; an idle thread does not
      worker.postMessage({ ...msg, id }, transfer);
    });
  }

  private start(): Worker {
    const worker = new Worker(BOOTSTRAP, {
      workerData: { threadNice: computeThreadNice(), sdl: this.sdl, __entry: ENTRY } satisfies PayloadWorkerInit & { __entry: string },
    });
    worker.unref();
    worker.on('message', (msg: PayloadFromWorker) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (!this.pending.size) worker.unref();
      if ('invalidJson' in msg) p.reject(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY());
      else if ('error' in msg) p.reject(new AppError(msg.error.code as ErrorCode, msg.error.message, msg.error.details));
      else if ('bytes' in msg) p.resolve(msg.bytes);
      else if ('text' in msg) p.resolve(msg.text);
      else p.resolve({ value: msg.value, held: msg.held });
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = null;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the payload thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }
}

let shared: PayloadWorker | null = null;

/** The process's payload worker (its thread starts with the first payload sent to it). */
export function payloadWorker(): PayloadWorker {
  return (shared ??= new PayloadWorker());
}
