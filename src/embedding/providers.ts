/**
 * Execution-provider selection. `auto` tries CUDA and falls back to CPU (logged); `cuda` and `webgpu` are
 * strict: if the provider does not initialise, model loading fails with MODEL_UNAVAILABLE and a message that
 * says how to enable it. Runs inside the worker (where sessions live); the session factory is injected so
 * the policy is unit-testable without ONNX Runtime.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';

export type ProviderName = 'auto' | 'cuda' | 'webgpu' | 'cpu';
export const PROVIDERS: readonly ProviderName[] = ['auto', 'cuda', 'webgpu', 'cpu'];

export interface ProviderChoice<S> {
  session: S;
  provider: 'cuda' | 'webgpu' | 'cpu';
  /** Why a requested accelerator was not used (auto only). */
  fallbackReason?: string;
}

export const CUDA_HINT =
  'CUDA execution provider libraries are not installed or CUDA 12 / cuDNN 9 is missing. ' +
  'Reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (see docs/embedding.md, "GPU"), or set the provider to cpu/auto.';
export const WEBGPU_HINT = 'WebGPU adapter not available (needs a GPU with Vulkan/Metal/D3D12 drivers); set the provider to cpu/auto.';

const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);

/**
 * Whether onnxruntime-node's CUDA provider library sits next to its binding (it is only there when the
 * package was installed with ONNXRUNTIME_NODE_INSTALL=cuda12). `undefined` when that cannot be told.
 */
export function cudaProviderInstalled(): boolean | undefined {
  try {
    const req = createRequire(import.meta.url);
    const main = req.resolve('onnxruntime-node');
    const root = main.slice(0, main.lastIndexOf('onnxruntime-node') + 'onnxruntime-node'.length);
    const lib =
      process.platform === 'win32'
        ? 'onnxruntime_providers_cuda.dll'
        : process.platform === 'linux'
          ? 'libonnxruntime_providers_cuda.so'
          : null;
    if (!lib) return false; // no CUDA builds for macOS
    return existsSync(join(root, 'bin', 'napi-v6', process.platform, process.arch, lib));
  } catch {
    return undefined;
  }
}

export async function createWithProvider<S>(
  requested: ProviderName,
  create: (provider: 'cuda' | 'webgpu' | 'cpu') => Promise<S>,
  cudaInstalled: () => boolean | undefined = cudaProviderInstalled,
): Promise<ProviderChoice<S>> {
  if (!PROVIDERS.includes(requested)) {
    throw new AppError(
      ErrorCode.MODEL_UNAVAILABLE,
      `Unknown execution provider "${String(requested)}" (expected one of ${PROVIDERS.join(', ')})`,
    );
  }
  if (requested === 'cpu') return { session: await create('cpu'), provider: 'cpu' };
  if (requested === 'auto') {
    if (cudaInstalled() === false) {
      return {
        session: await create('cpu'),
        provider: 'cpu',
        fallbackReason: 'CUDA provider libraries not installed (onnxruntime-node was installed without ONNXRUNTIME_NODE_INSTALL=cuda12)',
      };
    }
    try {
      return { session: await create('cuda'), provider: 'cuda' };
    } catch (err) {
      return { session: await create('cpu'), provider: 'cpu', fallbackReason: `CUDA unavailable: ${firstLine(err)}` };
    }
  }
  try {
    return { session: await create(requested), provider: requested };
  } catch (err) {
    throw new AppError(
      ErrorCode.MODEL_UNAVAILABLE,
      `Execution provider "${requested}" failed to initialise: ${firstLine(err)}. ${requested === 'cuda' ? CUDA_HINT : WEBGPU_HINT}`,
      { provider: requested },
    );
  }
}

/** The provider `auto` is expected to initialise: CUDA where its libraries are installed, else CPU. */
export function expectedProvider(
  requested: ProviderName,
  cudaInstalled: () => boolean | undefined = cudaProviderInstalled,
): 'cuda' | 'webgpu' | 'cpu' {
  if (requested !== 'auto') return requested;
  return cudaInstalled() === false ? 'cpu' : 'cuda';
}
