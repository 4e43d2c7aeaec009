/**
 * Inference worker: one ONNX Runtime session per tower (vision, text), created once, reused for every
 * batch. `session.run` blocks this thread, never the main one. Outputs are found by name
 * (pooler_output, else image_embeds / text_embeds), L2-normalised here, and transferred back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { fromHalf, toHalf } from './fp16.js';
import type { FromWorker, Kind, ToWorker, WorkerInit } from './protocol.js';
import { createWithProvider } from './providers.js';
import { lowerThisThread } from '../admission/thread-priority.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (msg: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);
// Before any session exists, so ONNX Runtime's intra-op threads inherit it (admission/thread-priority.ts).
lowerThisThread(init.threadNice ?? 0);

interface Tower {
  session: ort.InferenceSession;
  inputName: string;
  inputType: string;
  outputName: string;
  outputType: string;
  hasAttentionMask: boolean;
  /** NaFlex vision towers: the element types of pixel_attention_mask and spatial_shapes (int64 or int32). */
  naflex?: { maskType: string; shapesType: string };
  file: string;
}

const EMBED_OUTPUTS: Record<Kind, string[]> = {
  image: ['pooler_output', 'image_embeds'],
  text: ['pooler_output', 'text_embeds'],
};

class ModelError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function sessionOptions(provider: 'cuda' | 'webgpu' | 'cpu'): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // Intra-op threads sleep instead of spinning between kernels: the process shares its cores with
    // image decoding, GraphQL and often Postgres; with spinning, measured throughput on a loaded 2-core
    // machine dropped by up to half (bench notes in BENCHMARKS.md).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
    // The rest stay at what measured best or no worse (bench embedding-int8's session-options table, int8
    // B/16, alternating, CPU ms per image): 'extended' instead of 'all' was 5–11 % more CPU per image,
    // no memory arena and dynamic_block_base 4 were within the noise of a machine at load 17, so the
    // defaults (arena on, ORT's block size) stay until a quiet run shows otherwise; sequential
    // execution and one inter-op thread because the towers are a chain of ops with nothing to run beside.
    // quiet while probing providers; real failures surface as exceptions
    logSeverityLevel: 3,
  };
}

type Meta = { name: string; isTensor: boolean; type?: string; shape?: (number | string)[] };

function describeTower(session: ort.InferenceSession, kind: Kind, file: string): Tower {
  const inputs = (session.inputMetadata as readonly Meta[]) ?? [];
  const outputs = (session.outputMetadata as readonly Meta[]) ?? [];
  const inputName = kind === 'image' ? 'pixel_values' : 'input_ids';
  const expectType = kind === 'image' ? ['float32', 'float16'] : ['int64'];
  const input = inputs.find((m) => m.name === inputName);
  if (!input) {
    throw new ModelError('MODEL_UNAVAILABLE', `${file}: expected an input named "${inputName}", found [${session.inputNames.join(', ')}]`);
  }
  if (input.type && !expectType.includes(input.type)) {
    throw new ModelError('MODEL_UNAVAILABLE', `${file}: input "${inputName}" is ${input.type}, expected ${expectType.join(' or ')}`);
  }
  const shape = input.shape ?? [];
  const naflex = kind === 'image' ? init.naflex : undefined;
  const auxNames = naflex ? ['pixel_attention_mask', 'spatial_shapes'] : ['attention_mask'];
  if (naflex) {
    for (const n of auxNames) {
      if (!inputs.some((m) => m.name === n)) {
        throw new ModelError(
          'MODEL_UNAVAILABLE',
          `${file}: a NaFlex vision tower (preprocessor_config.json: Siglip2ImageProcessor) needs an input named "${n}", found [${session.inputNames.join(', ')}]`,
        );
      }
    }
  } else if (kind === 'image' && inputs.some((m) => m.name === 'spatial_shapes')) {
    throw new ModelError(
      'MODEL_UNAVAILABLE',
      `${file}: the graph takes NaFlex inputs (spatial_shapes) but preprocessor_config.json is not a Siglip2ImageProcessor with max_num_patches`,
    );
  }
  const fixed = naflex
    ? [naflex.maxNumPatches, 3 * naflex.patchSize * naflex.patchSize]
    : kind === 'image'
      ? [3, init.imageHeight, init.imageWidth]
      : [init.textMaxLength];
  const tail = shape.slice(1);
  if (shape.length !== fixed.length + 1 || tail.some((d, i) => typeof d === 'number' && d > 0 && d !== fixed[i])) {
    throw new ModelError(
      'MODEL_UNAVAILABLE',
      `${file}: input "${inputName}" has shape [${shape.join(',')}], expected [batch,${fixed.join(',')}] (from config/preprocessor_config)`,
    );
  }
  const extra = inputs.filter((m) => m.name !== inputName && !auxNames.includes(m.name));
  if (extra.length) throw new ModelError('MODEL_UNAVAILABLE', `${file}: unexpected inputs [${extra.map((m) => m.name).join(', ')}]`);
  const outName = EMBED_OUTPUTS[kind].find((n) => session.outputNames.includes(n));
  if (!outName) {
    throw new ModelError(
      'MODEL_UNAVAILABLE',
      `${file}: expected an output named ${EMBED_OUTPUTS[kind].join(' or ')}, found [${session.outputNames.join(', ')}]`,
    );
  }
  const out = outputs.find((m) => m.name === outName);
  const outDim = out?.shape?.[out.shape.length - 1];
  if (typeof outDim === 'number' && outDim > 0 && outDim !== init.dimension) {
    throw new ModelError('MODEL_UNAVAILABLE', `${file}: output "${outName}" has dimension ${outDim}, config.json says ${init.dimension}`);
  }
  return {
    session,
    inputName,
    inputType: input.type ?? (kind === 'image' ? 'float32' : 'int64'),
    outputName: outName,
    outputType: out?.type ?? 'float32',
    hasAttentionMask: inputs.some((m) => m.name === 'attention_mask'),
    ...(naflex
      ? {
          naflex: {
            maskType: inputs.find((m) => m.name === 'pixel_attention_mask')?.type ?? 'int64',
            shapesType: inputs.find((m) => m.name === 'spatial_shapes')?.type ?? 'int64',
          },
        }
      : {}),
    file,
  };
}

async function open(path: string, provider: 'cuda' | 'webgpu' | 'cpu') {
  return ort.InferenceSession.create(path, sessionOptions(provider));
}

function l2normalise(data: Float32Array, batch: number, dim: number): Float32Array {
  const out = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += data[b * dim + i]! ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let i = 0; i < dim; i++) out[b * dim + i] = data[b * dim + i]! * inv;
  }
  return out;
}

async function run(
  tower: Tower,
  kind: Kind,
  batch: number,
  data: Float32Array | BigInt64Array,
  mask?: BigInt64Array,
  shapes?: BigInt64Array,
): Promise<Float32Array> {
  const feeds: Record<string, ort.Tensor> = {};
  const ints = (type: string, v: BigInt64Array, dims: number[]) =>
    type === 'int32' ? new ort.Tensor('int32', Int32Array.from(v, Number), dims) : new ort.Tensor('int64', v, dims);
  if (kind === 'image' && init.naflex && tower.naflex) {
    const N = init.naflex.maxNumPatches;
    const dims = [batch, N, 3 * init.naflex.patchSize * init.naflex.patchSize];
    feeds[tower.inputName] =
      tower.inputType === 'float16'
        ? halfTensor(toHalf(data as Float32Array), dims)
        : new ort.Tensor('float32', data as Float32Array, dims);
    feeds['pixel_attention_mask'] = ints(tower.naflex.maskType, mask ?? new BigInt64Array(batch * N).fill(1n), [batch, N]);
    feeds['spatial_shapes'] = ints(tower.naflex.shapesType, shapes ?? new BigInt64Array(batch * 2), [batch, 2]);
  } else if (kind === 'image') {
    const dims = [batch, 3, init.imageHeight, init.imageWidth];
    feeds[tower.inputName] =
      tower.inputType === 'float16'
        ? halfTensor(toHalf(data as Float32Array), dims)
        : new ort.Tensor('float32', data as Float32Array, dims);
  } else {
    feeds[tower.inputName] = new ort.Tensor('int64', data as BigInt64Array, [batch, init.textMaxLength]);
    if (tower.hasAttentionMask) {
      // all ones: SigLIP attends to every position, pads included, as it was trained (see index.ts)
      feeds['attention_mask'] = new ort.Tensor('int64', new BigInt64Array(batch * init.textMaxLength).fill(1n), [
        batch,
        init.textMaxLength,
      ]);
    }
  }
  const result = await tower.session.run(feeds, [tower.outputName]);
  const out = result[tower.outputName]!;
  const dims = out.dims;
  if (dims.length !== 2 || dims[0] !== batch || dims[1] !== init.dimension) {
    throw new ModelError(
      'MODEL_UNAVAILABLE',
      `${tower.file}: output "${tower.outputName}" has shape [${dims.join(',')}], expected [${batch},${init.dimension}] (config.json)`,
    );
  }
  const raw = out.type === 'float16' ? halfOutput(out.data) : (out.data as Float32Array);
  return l2normalise(raw, batch, init.dimension);
}

/**
 * A float16 input tensor the native binding can read on every Node version. Where Node has a global
 * Float16Array (Node 24), onnxruntime-common stores float16 data as one, and onnxruntime-node's binding
 * (1.30) does not recognise that typed array: it reads it as empty ("not enough space: expected …,
 * got 0"). An own `data` property on the tensor hands the binding the Uint16Array of the same bits,
 * which it takes on every version.
 */
function halfTensor(bits: Uint16Array, dims: number[]): ort.Tensor {
  const tensor = new ort.Tensor('float16', bits, dims);
  if (!(tensor.data instanceof Uint16Array)) Object.defineProperty(tensor, 'data', { value: bits });
  return tensor;
}

/** A float16 output as float32: IEEE half bits (Node 20, 22), or a Float16Array of numbers (Node 24). */
function halfOutput(data: ort.Tensor['data']): Float32Array {
  return data instanceof Uint16Array ? fromHalf(data) : Float32Array.from(data as ArrayLike<number>);
}

let towers: Record<Kind, Tower>;

async function start() {
  try {
    const filesFor = (p: 'cuda' | 'webgpu' | 'cpu') => init.autoVariants?.[p] ?? init;
    const choice = await createWithProvider(init.provider, (p) => open(filesFor(p).visionModelPath, p));
    const files = filesFor(choice.provider);
    const vision = describeTower(choice.session, 'image', 'onnx/' + files.visionModelPath.split(/[\\/]/).pop());
    const textSession = await open(files.textModelPath, choice.provider);
    const text = describeTower(textSession, 'text', 'onnx/' + files.textModelPath.split(/[\\/]/).pop());
    towers = { image: vision, text };
    if (init.warmup && init.naflex) {
      // one real patch (1×1 grid), the rest padding: exercises the mask path
      const { patchSize: P, maxNumPatches: N } = init.naflex;
      const mask = new BigInt64Array(N);
      mask[0] = 1n;
      await run(vision, 'image', 1, new Float32Array(N * 3 * P * P), mask, BigInt64Array.from([1n, 1n]));
      await run(text, 'text', 1, new BigInt64Array(init.textMaxLength));
    } else if (init.warmup) {
      await run(vision, 'image', 1, new Float32Array(3 * init.imageWidth * init.imageHeight));
      await run(text, 'text', 1, new BigInt64Array(init.textMaxLength));
    }
    post({
      type: 'ready',
      provider: choice.provider,
      fallbackReason: choice.fallbackReason,
      ...(init.autoVariants ? { variant: init.autoVariants[choice.provider].variant } : {}),
      inputs: { image: vision.session.inputNames.slice(), text: text.session.inputNames.slice() },
    });
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'MODEL_UNAVAILABLE';
    post({
      type: 'init-error',
      code: typeof code === 'string' ? code : 'MODEL_UNAVAILABLE',
      message: err instanceof Error ? err.message : String(err),
    });
  }
}

// Messages are handled strictly one at a time (the engine never sends a second run before the first returns).
async function onMessage(msg: ToWorker): Promise<void> {
  if (msg.type === 'memory') {
    const m = process.memoryUsage();
    post({ type: 'memory', id: msg.id, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
    return;
  }
  if (msg.type === 'close') {
    await Promise.all([towers?.image.session.release(), towers?.text.session.release()]).catch(() => {});
    process.exit(0); // ends this worker thread only
  }
  if (msg.type === 'crash' || msg.crash) {
    // test hook: an uncaught error outside any native call, as a real bug in this thread would be
    setImmediate(() => {
      throw new Error('simulated worker crash');
    });
    return;
  }
  try {
    const data = await run(towers[msg.kind], msg.kind, msg.batch, msg.data, msg.mask, msg.shapes);
    post({ type: 'result', id: msg.id, data }, [data.buffer as ArrayBuffer]);
  } catch (err) {
    const code = (err as { code?: string }).code;
    post({
      type: 'error',
      id: msg.id,
      code: typeof code === 'string' ? code : 'EMBEDDING_FAILED',
      message: err instanceof Error ? err.message : String(err),
    });
  }
}
port.on('message', (msg: ToWorker) => void onMessage(msg));

await start();
