/**
 * A fixed-size pool of inference workers (one ONNX Runtime session per tower per worker, created once).
 * Each worker takes one batch at a time. A worker that dies (uncaught error, native abort of the thread,
 * terminate) fails its in-flight batch with a clear EMBEDDING_FAILED error and is replaced.
 */
import { Worker } from 'node:worker_threads';
import { AppError, ErrorCode, type ErrorCode as Code } from '../errors.js';
import type { FromWorker, Kind, ToWorker, WorkerInit } from './protocol.js';

export interface Logger {
  info: (...args: unknown[]) => void;
  warn: (...args: unknown[]) => void;
  error: (...args: unknown[]) => void;
}

interface InFlight {
  id: number;
  resolve: (data: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  index: number;
  worker: Worker | null;
  state: 'starting' | 'ready' | 'dead';
  inflight: InFlight | null;
  pendingMemory: Map<number, (m: WorkerMemory) => void>;
  restarts: number;
}

export interface WorkerMemory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface ReadyInfo {
  provider: 'cuda' | 'webgpu' | 'cpu';
  fallbackReason?: string;
  variant?: string;
}

const isTs = import.meta.url.endsWith('.ts');
const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);
const ENTRY = new URL(isTs ? './worker.ts' : './worker.js', import.meta.url).href;

const toCode = (c: string): Code => ((Object.values(ErrorCode) as string[]).includes(c) ? (c as Code) : ErrorCode.EMBEDDING_FAILED);

export class WorkerPool {
  private slots: Slot[] = [];
  private nextId = 1;
  private closing = false;
  ready: ReadyInfo | null = null;
  /** Called whenever a worker becomes free or changes state. */
  onChange: () => void = () => {};

  constructor(
    private readonly init: WorkerInit,
    private readonly size: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<ReadyInfo> {
    this.slots = Array.from({ length: this.size }, (_, index) => ({
      index,
      worker: null,
      state: 'starting' as const,
      inflight: null,
      pendingMemory: new Map(),
      restarts: 0,
    }));
    try {
      const infos = await Promise.all(this.slots.map((s) => this.spawn(s)));
      this.ready = infos[0]!;
      return this.ready;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private spawn(slot: Slot): Promise<ReadyInfo> {
    slot.state = 'starting';
    const worker = new Worker(BOOTSTRAP, { workerData: { ...this.init, __entry: ENTRY } });
    slot.worker = worker;
    return new Promise<ReadyInfo>((resolve, reject) => {
      let started = false;
      worker.on('message', (msg: FromWorker) => {
        switch (msg.type) {
          case 'ready':
            started = true;
            slot.state = 'ready';
            resolve({ provider: msg.provider, fallbackReason: msg.fallbackReason, variant: msg.variant });
            this.onChange();
            break;
          case 'init-error':
            started = true;
            slot.state = 'dead';
            slot.worker = null; // its exit is expected: not a crash to recover from
            reject(new AppError(toCode(msg.code), msg.message));
            void worker.terminate();
            break;
          case 'result':
          case 'error': {
            const f = slot.inflight;
            if (!f || f.id !== msg.id) return;
            slot.inflight = null;
            if (msg.type === 'result') f.resolve(msg.data);
            else f.reject(new AppError(toCode(msg.code), msg.message));
            this.onChange();
            break;
          }
          case 'memory':
            slot.pendingMemory.get(msg.id)?.({
              rss: msg.rss,
              heapUsed: msg.heapUsed,
              external: msg.external,
              arrayBuffers: msg.arrayBuffers,
            });
            slot.pendingMemory.delete(msg.id);
            break;
        }
      });
      let crashError: Error | null = null;
      worker.on('error', (err) => {
        crashError = err;
      });
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return;
        slot.worker = null;
        if (!started) {
          slot.state = 'dead';
          reject(
            new AppError(
              ErrorCode.MODEL_UNAVAILABLE,
              `Embedding worker failed to start: ${crashError?.message ?? `exit code ${code}`}`,
              undefined,
              {
                cause: crashError,
              },
            ),
          );
          return;
        }
        if (this.closing) return;
        this.handleCrash(slot, crashError, code);
      });
    });
  }

  private handleCrash(slot: Slot, err: Error | null, code: number): void {
    const reason = err?.message ?? `exit code ${code}`;
    const f = slot.inflight;
    slot.inflight = null;
    slot.state = 'starting';
    this.log.error({ worker: slot.index, reason }, 'embedding worker crashed; restarting it');
    f?.reject(
      new AppError(
        ErrorCode.EMBEDDING_FAILED,
        `Embedding worker crashed while processing this request (${reason}); the worker is being restarted`,
        {
          worker: slot.index,
        },
      ),
    );
    slot.pendingMemory.clear();
    slot.restarts++;
    const delay = Math.min(30_000, slot.restarts > 3 ? 1000 * 2 ** (slot.restarts - 3) : 0);
    setTimeout(() => {
      if (this.closing) return;
      this.spawn(slot).then(
        () => this.log.info({ worker: slot.index }, 'embedding worker restarted'),
        (e: unknown) => {
          this.log.error({ worker: slot.index, err: e instanceof Error ? e.message : String(e) }, 'embedding worker failed to restart');
          this.onChange();
        },
      );
    }, delay).unref();
    this.onChange();
  }

  free(): number {
    return this.slots.filter((s) => s.state === 'ready' && !s.inflight).length;
  }

  alive(): boolean {
    return !this.closing && this.slots.some((s) => s.state !== 'dead');
  }

  run(kind: Kind, batch: number, data: Float32Array | BigInt64Array, mask?: BigInt64Array, shapes?: BigInt64Array): Promise<Float32Array> {
    const slot = this.slots.find((s) => s.state === 'ready' && !s.inflight);
    if (!slot || !slot.worker) return Promise.reject(new AppError(ErrorCode.EMBEDDING_FAILED, 'No free embedding worker'));
    const id = this.nextId++;
    const worker = slot.worker;
    return new Promise<Float32Array>((resolve, reject) => {
      slot.inflight = { id, resolve, reject };
      const msg: ToWorker = {
        type: 'run',
        id,
        kind,
        batch,
        data,
        mask,
        ...(shapes ? { shapes } : {}),
        ...(this.crashNext ? { crash: true } : {}),
      };
      this.crashNext = false;
      const transfer: ArrayBuffer[] = [data.buffer as ArrayBuffer];
      if (mask) transfer.push(mask.buffer as ArrayBuffer);
      if (shapes) transfer.push(shapes.buffer as ArrayBuffer);
      worker.postMessage(msg, transfer);
    });
  }

  /** Memory as seen from inside each worker (rss is process-wide; heap figures are per thread). */
  async memory(): Promise<WorkerMemory[]> {
    return Promise.all(
      this.slots
        .filter((s) => s.worker && s.state === 'ready')
        .map(
          (s) =>
            new Promise<WorkerMemory>((resolve) => {
              const id = this.nextId++;
              s.pendingMemory.set(id, resolve);
              s.worker!.postMessage({ type: 'memory', id } satisfies ToWorker);
            }),
        ),
    );
  }

  private crashNext = false;

  /**
   * Test hook: make worker `index` die with an uncaught error, now (idle) or, with `duringNextRun`, on
   * receiving its next batch (so that batch is in flight when it dies). Never `worker.terminate()` during
   * an inference: terminating a thread inside onnxruntime-node's native run aborts the whole process
   * ("terminate called after throwing an instance of 'Napi::Error'"), which is also why close() is graceful.
   */
  crashForTest(index: number, duringNextRun = false): void {
    if (duringNextRun) this.crashNext = true;
    else this.slots[index]?.worker?.postMessage({ type: 'crash' } satisfies ToWorker);
  }

  restartCount(): number {
    return this.slots.reduce((a, s) => a + s.restarts, 0);
  }

  /**
   * Reject in-flight calls, then let each worker finish its current batch, release its sessions and exit;
   * terminate only a worker that has not exited after `graceMs` (terminating one inside a native
   * inference call can abort the process).
   */
  async close(graceMs = 30_000): Promise<void> {
    this.closing = true;
    const closed = new AppError(ErrorCode.MODEL_UNAVAILABLE, 'Embedder is closed');
    await Promise.all(
      this.slots.map(async (s) => {
        s.inflight?.reject(closed);
        s.inflight = null;
        s.state = 'dead';
        const w = s.worker;
        s.worker = null;
        if (!w) return;
        const exited = new Promise<boolean>((resolve) => {
          w.once('exit', () => resolve(true));
          setTimeout(() => resolve(false), graceMs).unref();
        });
        try {
          w.postMessage({ type: 'close' } satisfies ToWorker);
        } catch {
          /* already gone */
        }
        if (!(await exited)) await w.terminate();
      }),
    );
  }
}
