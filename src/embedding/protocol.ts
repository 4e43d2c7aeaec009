/** Messages between the engine (main thread) and its inference workers. */
import type { PreprocessSpec } from './model-dir.js';
import type { ProviderName } from './providers.js';

export interface WorkerInit {
  visionModelPath: string;
  textModelPath: string;
  /**
   * Variant 'auto': the graph files to open for each execution provider; the worker uses the entry of
   * the provider that initialises (CUDA's fp16 files, or the CPU's int8 ones when auto falls back).
   */
  autoVariants?: Record<'cuda' | 'webgpu' | 'cpu', { variant?: string; visionModelPath: string; textModelPath: string }>;
  provider: ProviderName;
  intraOpThreads: number;
  dimension: number;
  imageWidth: number;
  imageHeight: number;
  textMaxLength: number;
  /** SigLIP 2 NaFlex: the vision tower takes patches [B,N,3·P·P], pixel_attention_mask and spatial_shapes. */
  naflex?: { patchSize: number; maxNumPatches: number };
  /** Warm-up run at start (validates the output dimension for real). */
  warmup: boolean;
  /** The nice value the worker lowers itself to before creating its sessions (admission/thread-priority.ts). */
  threadNice?: number;
}

export type Kind = 'image' | 'text';

export type ToWorker =
  | {
      type: 'run';
      id: number;
      kind: Kind;
      batch: number;
      data: Float32Array | BigInt64Array;
      /** text: attention_mask [B,L]; NaFlex images: pixel_attention_mask [B,N]. */
      mask?: BigInt64Array;
      /** NaFlex images: spatial_shapes [B,2] (patch rows, patch columns). */
      shapes?: BigInt64Array;
      crash?: boolean;
    }
  | { type: 'memory'; id: number }
  /** Finish the current batch, release the sessions, exit. */
  | { type: 'close' }
  /** Test hook: die now with an uncaught error (a run message with `crash: true` does the same mid-request). */
  | { type: 'crash' };

export type FromWorker =
  | {
      type: 'ready';
      provider: 'cuda' | 'webgpu' | 'cpu';
      fallbackReason?: string;
      /** The variant of the files opened (undefined: fp32 or as configured). */
      variant?: string;
      inputs: Record<Kind, string[]>;
    }
  | { type: 'init-error'; code: string; message: string }
  | { type: 'result'; id: number; data: Float32Array }
  | { type: 'error'; id: number; code: string; message: string }
  | { type: 'memory'; id: number; rss: number; heapUsed: number; external: number; arrayBuffers: number };

/** The preprocessing workers (preprocess-pool.ts): full-resolution RGB in, the tower's input out. */
export interface PreprocessWorkerInit {
  spec: PreprocessSpec;
  /** The nice value the worker lowers itself to (admission/thread-priority.ts). */
  threadNice?: number;
}

export type PreprocessToWorker =
  /** crash: test hook, die with an uncaught error instead of preprocessing. */
  { type: 'run'; id: number; data: Uint8Array; width: number; height: number; crash?: boolean };

export type PreprocessFromWorker =
  | { type: 'tensor'; id: number; data: Float32Array }
  | { type: 'naflex'; id: number; pixels: Float32Array; mask: Uint8Array; rows: number; cols: number }
  | { type: 'error'; id: number; message: string };
