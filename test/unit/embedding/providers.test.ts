import { describe, expect, it } from 'vitest';
import { createWithProvider, cudaProviderInstalled } from '../../../src/embedding/providers.js';

const failing = (ok: string[]) => async (p: string) => {
  if (!ok.includes(p)) throw new Error(`${p}: Failed to load shared library`);
  return `session:${p}`;
};

describe('execution provider selection (CUDA absent)', () => {
  it('auto falls back to CPU when CUDA fails to initialise, and says why', async () => {
    const r = await createWithProvider('auto', failing(['cpu']), () => undefined);
    expect(r).toMatchObject({ provider: 'cpu', session: 'session:cpu' });
    expect(r.fallbackReason).toMatch(/CUDA unavailable.*Failed to load/);
  });

  it('auto does not even try CUDA when its provider library is not installed', async () => {
    const tried: string[] = [];
    const r = await createWithProvider(
      'auto',
      async (p) => (tried.push(p), p),
      () => false,
    );
    expect(tried).toEqual(['cpu']);
    expect(r.fallbackReason).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('auto uses CUDA when it initialises', async () => {
    const r = await createWithProvider('auto', failing(['cuda', 'cpu']), () => true);
    expect(r).toMatchObject({ provider: 'cuda' });
    expect(r.fallbackReason).toBeUndefined();
  });

  it('explicit cuda / webgpu fail with MODEL_UNAVAILABLE and a hint, never silently use CPU', async () => {
    await expect(createWithProvider('cuda', failing(['cpu']))).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/cuda.*ONNXRUNTIME_NODE_INSTALL=cuda12/s),
    });
    await expect(createWithProvider('webgpu', failing(['cpu']))).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
    await expect(createWithProvider('tpu' as never, failing(['cpu']))).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
  });

  it('detects that this install has no CUDA provider library', () => {
    // The repo's .npmrc skips onnxruntime-node's CUDA download; on a CUDA install this is true.
    expect(typeof cudaProviderInstalled()).toBe('boolean');
  });
});
