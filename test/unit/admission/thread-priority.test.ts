/**
 * Serving before computing (src/admission/thread-priority.ts), read back from Linux itself: the nice value
 * of each of this process's threads in /proc. The threads that decode photos (the libuv pool, libvips'
 * workers) and run the model (its inference worker with ONNX Runtime's threads, the preprocessing worker)
 * are lowered; the main thread, which answers every request, is not.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeThreadNice, lowerComputeThreads } from '../../../src/admission/thread-priority.js';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../../src/embedding/index.js';
import { cleanupDirs, tinyModel } from '../embedding/helpers.js';

/** Each thread of this process: its name and nice value (/proc/self/task/<tid>/stat; the name may hold spaces). */
function threads(): Array<{ tid: string; name: string; nice: number }> {
  return readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' '); // fields from the 3rd (state) on
      return [{ tid, name: stat.slice(stat.indexOf('(') + 1, close), nice: Number(fields[16]) }]; // field 19: nice
    } catch {
      return []; // ended meanwhile
    }
  });
}

describe.runIf(process.platform === 'linux')('compute threads at a lower CPU priority', () => {
  let e: Embedder;
  const NICE = 7;
  beforeAll(async () => {
    e = await createEmbedder({
      ...defaultEmbedderOptions(),
      modelDir: await tinyModel({ dimension: 32 }),
      intraOpThreads: 2,
      threadNice: NICE,
    });
  });
  afterAll(async () => {
    await e?.close();
    await cleanupDirs();
  });

  it('lowers the libuv pool and libvips threads, and the model’s workers, but never the main thread', async () => {
    const before = threads();
    const main = before.find((t) => t.tid === String(process.pid))!;
    expect(main.nice).toBe(0);
    const result = await lowerComputeThreads(NICE);
    expect(computeThreadNice()).toBe(NICE);
    const after = threads();
    const pool = after.filter((t) => t.name === 'libuv-worker');
    expect(pool.length).toBeGreaterThan(0);
    expect(result.lowered).toBeGreaterThanOrEqual(pool.length);
    for (const t of after.filter((x) => x.name === 'libuv-worker' || x.name.startsWith('libvips'))) expect(t.nice, t.name).toBe(NICE);
    // the inference worker, and the intra-op thread ONNX Runtime created from it (intraOpThreads 2), were
    // lowered by the worker itself at its start, before the lowerComputeThreads call
    const workers = before.filter((t) => t.nice === NICE);
    expect(workers.length).toBeGreaterThanOrEqual(2);
    expect(after.find((t) => t.tid === String(process.pid))!.nice).toBe(0);
  });

  it('lowers the preprocessing worker when it starts (a photo above the inline size)', async () => {
    const lowered = threads().filter((t) => t.nice === NICE).length;
    await e.embedImages([{ data: new Uint8Array(600 * 400 * 3).fill(90), width: 600, height: 400 }]);
    expect(threads().filter((t) => t.nice === NICE).length).toBe(lowered + 1);
  });
});
