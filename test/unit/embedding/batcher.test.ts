import { describe, expect, it } from 'vitest';
import { MicroBatcher, type BatchExecutor } from '../../../src/embedding/batcher.js';

/** Fake executor with `n` slots; each batch takes `ms`; records batch sizes. */
function fakeExecutor(n: number, ms: number) {
  let busy = 0;
  const sizes: number[] = [];
  let batcher: MicroBatcher<'a' | 'b', number, number> | null = null;
  const ex: BatchExecutor<'a' | 'b', number, number> = {
    free: () => n - busy,
    alive: () => true,
    run: async (_kind, payloads) => {
      busy++;
      sizes.push(payloads.length);
      await new Promise((r) => setTimeout(r, ms));
      busy--;
      if (payloads.includes(-1)) throw new Error('boom');
      queueMicrotask(() => batcher?.pump());
      return payloads.map((p) => p * 2);
    },
  };
  return { ex, sizes, attach: (b: MicroBatcher<'a' | 'b', number, number>) => (batcher = b) };
}

describe('MicroBatcher', () => {
  it('coalesces concurrent submissions up to maxBatch and keeps results in order', async () => {
    const f = fakeExecutor(1, 20);
    const b = new MicroBatcher(f.ex, 8, 5);
    f.attach(b);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => b.submit('a', i)));
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(Math.max(...f.sizes)).toBeLessThanOrEqual(8);
    expect(f.sizes.length).toBeLessThanOrEqual(4);
  });

  it('dispatches a lone request after maxWaitMs', async () => {
    const f = fakeExecutor(1, 1);
    const b = new MicroBatcher(f.ex, 16, 10);
    f.attach(b);
    const t0 = performance.now();
    await b.submit('a', 1);
    const dt = performance.now() - t0;
    expect(dt).toBeGreaterThanOrEqual(9);
    expect(f.sizes).toEqual([1]);
  });

  it('grows batches while executors are busy', async () => {
    const f = fakeExecutor(1, 30);
    const b = new MicroBatcher(f.ex, 32, 0);
    f.attach(b);
    const first = b.submit('a', 0); // dispatched alone
    await new Promise((r) => setTimeout(r, 5));
    const rest = Array.from({ length: 10 }, (_, i) => b.submit('a', i + 1)); // arrive while busy
    await Promise.all([first, ...rest]);
    expect(f.sizes).toEqual([1, 10]);
  });

  it('lets callers whose batch just finished join the next one (no 1/7/1/7 alternation)', async () => {
    const f = fakeExecutor(1, 15);
    const b = new MicroBatcher(f.ex, 16, 3);
    f.attach(b);
    // 8 closed-loop clients arriving a few ms apart, each submitting its next request as soon as the
    // previous one returns
    let left = 64;
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * 4));
        while (left-- > 0) await b.submit('a', 1);
      }),
    );
    const steady = f.sizes.slice(2);
    expect(steady.reduce((a, x) => a + x, 0) / steady.length).toBeGreaterThan(6);
  });

  it('keeps kinds apart and fails every item of a failed batch', async () => {
    const f = fakeExecutor(2, 5);
    const b = new MicroBatcher(f.ex, 4, 1);
    f.attach(b);
    const a = b.submit('a', 1);
    const bad = b.submit('b', -1);
    const bad2 = b.submit('b', 3);
    await expect(a).resolves.toBe(2);
    await expect(bad).rejects.toThrow('boom');
    await expect(bad2).rejects.toThrow('boom');
  });

  it('rejects queued and new work after close', async () => {
    const f = fakeExecutor(0, 1);
    const b = new MicroBatcher(f.ex, 4, 1);
    const p = b.submit('a', 1);
    b.close();
    await expect(p).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
    await expect(b.submit('a', 2)).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
  });
});
