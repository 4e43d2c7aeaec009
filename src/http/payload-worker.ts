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

/** 1 MiB: below this the work takes a few ms at most, about what the round trip to the thread costs. */
export const OFFLOAD_MIN_BYTES = 1 << 20;

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

  /** A JSON body, by Fastify's rules (FST_ERR_CTP_INVALID_JSON_BODY where Fastify's parser would say so). */
  parseJson(body: Buffer): Promise<unknown> {
    // A large Buffer.concat result owns its whole ArrayBuffer: hand it over; anything else is copied.
    const owned = body.byteOffset === 0 && body.buffer.byteLength === body.byteLength;
    const bytes = owned ? (body.buffer as ArrayBuffer) : new Uint8Array(body).buffer;
    return this.send({ id: 0, op: 'json', bytes }, [bytes]);
  }

  /** validateBase64 then decodeBase64Image, with their errors. */
  async decodeBase64(field: string, base64: string, maxBytes: number): Promise<Buffer> {
    const bytes = (await this.send({ id: 0, op: 'base64', field, base64, maxBytes })) as ArrayBuffer;
    return Buffer.from(bytes);
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
      workerData: { threadNice: computeThreadNice(), __entry: ENTRY } satisfies PayloadWorkerInit & { __entry: string },
    });
    worker.unref();
    worker.on('message', (msg: PayloadFromWorker) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (!this.pending.size) worker.unref();
      if ('invalidJson' in msg) p.reject(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY());
      else if ('error' in msg) p.reject(new AppError(msg.error.code as ErrorCode, msg.error.message, msg.error.details));
      else p.resolve('bytes' in msg ? msg.bytes : msg.value);
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
