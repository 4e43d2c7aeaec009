import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { listSupportedBackends } from 'onnxruntime-node';
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
});

describe('CUDA detection on this install (real onnxruntime-node)', () => {
  // Where onnxruntime-node keeps its native binding; the CUDA provider library sits next to it only
  // when the package was installed with ONNXRUNTIME_NODE_INSTALL=cuda12 (CI and the Dockerfile skip it).
  const req = createRequire(import.meta.url);
  const bindingDir = join(dirname(req.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', process.platform, process.arch);
  const cudaLibPresent = existsSync(join(bindingDir, 'libonnxruntime_providers_cuda.so'));

  it('ONNX Runtime reports CPU bundled and CUDA as a separately installed provider', () => {
    const backends = listSupportedBackends();
    expect(backends).toContainEqual({ name: 'cpu', bundled: true });
    if (process.platform === 'linux' && process.arch === 'x64') expect(backends).toContainEqual({ name: 'cuda', bundled: false });
  });

  it('reports CUDA installed exactly when its provider library is next to the binding', () => {
    expect(existsSync(join(bindingDir, 'onnxruntime_binding.node'))).toBe(true);
    expect(cudaProviderInstalled()).toBe(process.platform === 'linux' ? cudaLibPresent : false);
  });

  it.skipIf(cudaLibPresent)('without that library, auto never tries CUDA and names the reason', async () => {
    const tried: string[] = [];
    const r = await createWithProvider('auto', async (p) => (tried.push(p), p)); // the real detection
    expect(tried).toEqual(['cpu']);
    expect(r).toMatchObject({ provider: 'cpu', fallbackReason: expect.stringMatching(/not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/) });
  });
});
