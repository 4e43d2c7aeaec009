/**
 * Runs image preprocessing (the Pillow-identical squash + normalisation, or NaFlex patching) on worker
 * threads instead of the main one. Why: the resize is JavaScript and costs ~10 ms for a 640×480 photo and
 * ~0.2–0.3 s for a 16 MP one; on the main thread that time blocked every other request (GraphQL, health
 * checks) and could not overlap inference. Here the main thread only copies the pixels once and posts
 * them; the next call's images are preprocessed while the inference worker runs the current batch.
 *
 * Small images stay inline: below INLINE_MAX_PIXELS the resize costs about what a round trip to a
 * worker does (≤ 1 ms), and small inputs (thumbnails, test models) then never start a thread.
 *
 * Workers start lazily (the first large image) and are replaced when they die; a crash fails only the
 * images in that worker (EMBEDDING_FAILED). They run no native code, so close() may terminate them.
 */
import { Worker } from 'node:worker_threads';
import { AppError, ErrorCode } from '../errors.js';
import type { PreprocessSpec } from './model-dir.js';
import { naflexPreprocess, type NaflexInput } from './naflex.js';
import { preprocessRgb, type RgbImage } from './preprocess.js';
import type { PreprocessFromWorker, PreprocessToWorker, PreprocessWorkerInit } from './protocol.js';

/** 320×320: below this an inline resize costs about as much as posting to a worker. */
export const INLINE_MAX_PIXELS = 320 * 320;

const isTs = import.meta.url.endsWith('.ts');
const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);
const ENTRY = new URL(isTs ? './preprocess-worker.ts' : './preprocess-worker.js', import.meta.url).href;

export type Preprocessed = Float32Array | NaflexInput;

interface Pending {
  resolve: (x: Preprocessed) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

export class PreprocessPool {
  private slots: (Slot | null)[];
  private nextId = 1;
  private closed = false;
  /** Images preprocessed on a worker (the rest ran inline); for tests and metrics. */
  offloaded = 0;

  constructor(
    private readonly spec: PreprocessSpec,
    size: number,
    private readonly inlineMaxPixels = INLINE_MAX_PIXELS,
    private readonly threadNice = 0,
  ) {
    this.slots = Array.from({ length: Math.max(1, size) }, () => null);
  }

  /** The tower's input for one validated RGB image (the caller's buffer is left untouched). */
  run(img: RgbImage): Promise<Preprocessed> {
    if (this.closed) return Promise.reject(new AppError(ErrorCode.MODEL_UNAVAILABLE, 'Embedder is closed'));
    if (img.width * img.height <= this.inlineMaxPixels) {
      try {
        return Promise.resolve(this.inline(img));
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    const slot = this.pick();
    const id = this.nextId++;
    // one copy, then transferred: the caller may still use its pixels, and a view into a larger
    // (pooled) buffer would otherwise clone the whole backing store. Not .slice(): on a Buffer (sharp's
    // output) that is a view, and transferring it would detach the caller's memory.
    const data = new Uint8Array(img.data);
    return new Promise<Preprocessed>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      this.offloaded++;
      slot.worker.ref();
      const crash = this.crashNext;
      this.crashNext = false;
      slot.worker.postMessage(
        { type: 'run', id, data, width: img.width, height: img.height, ...(crash ? { crash: true } : {}) } satisfies PreprocessToWorker,
        [data.buffer],
      );
    });
  }

  private inline(img: RgbImage): Preprocessed {
    return this.spec.naflex ? naflexPreprocess(img, this.spec, this.spec.naflex) : preprocessRgb(img, this.spec);
  }

  /** The worker with the fewest images queued (started if its slot is empty). */
  private pick(): Slot {
    let best = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (!s) {
        best = i;
        break;
      }
      if (best < 0 || s.pending.size < this.slots[best]!.pending.size) best = i;
    }
    return this.slots[best] ?? this.spawn(best);
  }

  private spawn(index: number): Slot {
    const worker = new Worker(BOOTSTRAP, {
      workerData: { spec: this.spec, threadNice: this.threadNice, __entry: ENTRY } satisfies PreprocessWorkerInit & { __entry: string },
    });
    const slot: Slot = { worker, pending: new Map() };
    this.slots[index] = slot;
    // an idle preprocessing thread must not keep the process alive (ref'd only while it has work)
    worker.unref();
    worker.on('message', (msg: PreprocessFromWorker) => {
      const p = slot.pending.get(msg.id);
      if (!p) return;
      slot.pending.delete(msg.id);
      if (slot.pending.size === 0) worker.unref();
      if (msg.type === 'tensor') p.resolve(msg.data);
      else if (msg.type === 'naflex') p.resolve({ pixels: msg.pixels, mask: msg.mask, rows: msg.rows, cols: msg.cols });
      else p.reject(new AppError(ErrorCode.EMBEDDING_FAILED, `Image preprocessing failed: ${msg.message}`));
    });
    let crash: Error | null = null;
    worker.on('error', (err) => (crash = err));
    worker.on('exit', (code) => {
      if (this.slots[index] === slot) this.slots[index] = null; // the next large image starts a new one
      const reason = crash?.message ?? `exit code ${code}`;
      for (const p of slot.pending.values()) {
        p.reject(
          this.closed
            ? new AppError(ErrorCode.MODEL_UNAVAILABLE, 'Embedder is closed')
            : new AppError(
                ErrorCode.EMBEDDING_FAILED,
                `Image preprocessing worker stopped (${reason}); it is replaced on the next request`,
              ),
        );
      }
      slot.pending.clear();
    });
    return slot;
  }

  private crashNext = false;

  /** Test hook: the worker that receives the next image dies with an uncaught error instead. */
  crashForTest(): void {
    this.crashNext = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    const running = this.slots.filter((s): s is Slot => s !== null);
    this.slots = this.slots.map(() => null);
    await Promise.all(running.map((s) => s.worker.terminate()));
  }
}
