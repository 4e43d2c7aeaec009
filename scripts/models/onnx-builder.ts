/**
 * A minimal ONNX graph builder on top of onnx-proto (protobuf encoding only; ONNX Runtime validates the
 * result when it loads the file). Used by the model generators in this folder.
 */
import onnxProto from 'onnx-proto';
import { toHalf } from '../../src/embedding/fp16.js';

const { onnx } = onnxProto;

export const FLOAT = 1;
export const UINT8 = 2;
export const INT8 = 3;
export const INT32 = 6;
export const INT64 = 7;
export const FLOAT16 = 10;

export type Dim = number | string;

type AttrValue = number | number[] | string | { floats: number[] } | { tensor: TensorSpec };

export interface QuantizeOptions {
  /**
   * The weights' type, as transformers.js's scripts/quantize.py chooses it: `_int8` QInt8 (symmetric, zero
   * point 0), `_uint8` QUInt8 (asymmetric: zero point from the weights' min/max), `_quantized` (q8) QUInt8
   * where the graph has a Conv (ONNX Runtime has no ConvInteger kernel for signed weights) and QInt8 otherwise.
   */
  weightType: 'int8' | 'uint8';
  /** One scale per output column of each weight matrix, else one per tensor (transformers.js's default: per tensor). */
  perChannel?: boolean;
}

/** The weight type transformers.js's `q8` mode (the `_quantized` files) picks for a graph. */
export function q8WeightType(g: GraphBuilder): 'int8' | 'uint8' {
  return g.opTypes().has('Conv') ? 'uint8' : 'int8';
}

interface NodeSpec {
  opType: string;
  input: string[];
  output: string[];
  name: string;
  attribute: unknown[];
}

interface TensorSpec {
  name: string;
  dims: number[];
  dataType: number;
  rawData: Uint8Array;
}

/** Deterministic PRNG (mulberry32) with a Box–Muller normal sampler. */
export class Rng {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  uniform(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = Math.max(this.uniform(), 1e-12);
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  normals(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }
}

export class GraphBuilder {
  private nodes: NodeSpec[] = [];
  private initializers: TensorSpec[] = [];
  private inputs: unknown[] = [];
  private outputs: unknown[] = [];
  private counter = 0;

  constructor(private readonly name: string) {}

  private valueInfo(name: string, elemType: number, shape: Dim[]) {
    return {
      name,
      type: {
        tensorType: {
          elemType,
          shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    };
  }

  input(name: string, elemType: number, shape: Dim[]): string {
    this.inputs.push(this.valueInfo(name, elemType, shape));
    return name;
  }

  output(name: string, elemType: number, shape: Dim[]): void {
    this.outputs.push(this.valueInfo(name, elemType, shape));
  }

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Add a float32 initializer. */
  weight(prefix: string, dims: number[], data: Float32Array): string {
    const name = this.fresh(prefix);
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new Error(`weight ${name}: ${data.length} values for dims ${dims.join(',')}`);
    this.initializers.push({
      name,
      dims,
      dataType: FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** Add an int64 initializer (shapes, axes, indices). */
  ints(prefix: string, values: number[]): string {
    const name = this.fresh(prefix);
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({
      name,
      dims: [values.length],
      dataType: INT64,
      rawData: new Uint8Array(data.buffer),
    });
    return name;
  }

  scalar(prefix: string, value: number): string {
    const name = this.fresh(prefix);
    this.initializers.push({ name, dims: [], dataType: FLOAT, rawData: new Uint8Array(new Float32Array([value]).buffer) });
    return name;
  }

  /** Add a node; returns its output name(s). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    const output = outName ?? this.fresh(opType.toLowerCase());
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (typeof v === 'number') {
        return Number.isInteger(v) && !(name === 'epsilon' || name === 'alpha' || name === 'beta')
          ? { name, type: 2, i: v }
          : { name, type: 1, f: v };
      }
      if (typeof v === 'string') return { name, type: 3, s: new TextEncoder().encode(v) };
      if (Array.isArray(v)) return { name, type: 7, ints: v };
      if ('floats' in v) return { name, type: 6, floats: v.floats };
      return { name, type: 4, t: v.tensor };
    });
    this.nodes.push({ opType, input: inputs, output: [output], name: this.fresh(`n_${opType}`), attribute });
    return output;
  }

  encode(opset = 17): Uint8Array {
    return this.encodeGraph(this.nodes, this.initializers, opset);
  }

  opTypes(): Set<string> {
    return new Set(this.nodes.map((n) => n.opType));
  }

  /**
   * The graph with its large initializers (≥ minBytes) in an external data file, as exports over 2 GB
   * must be and many hub exports are (`onnx/vision_model.onnx` + `onnx/vision_model.onnx_data`):
   * each such tensor has data_location EXTERNAL and location/offset/length, offsets 4 KiB-aligned as
   * the ONNX converter writes them. `location` is relative to the .onnx file.
   */
  encodeWithExternalData(location: string, minBytes = 1024, opset = 17): { model: Uint8Array; data: Uint8Array } {
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const inits = this.initializers.map((t) => {
      if (t.rawData.byteLength < minBytes) return t;
      const pad = (4096 - (offset % 4096)) % 4096;
      if (pad) chunks.push(new Uint8Array(pad));
      offset += pad;
      chunks.push(t.rawData);
      const entry = {
        name: t.name,
        dims: t.dims,
        dataType: t.dataType,
        dataLocation: 1, // EXTERNAL
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(t.rawData.byteLength) },
        ],
      };
      offset += t.rawData.byteLength;
      return entry;
    });
    const data = new Uint8Array(offset);
    let at = 0;
    for (const c of chunks) {
      data.set(c, at);
      at += c.byteLength;
    }
    return { model: this.encodeGraph(this.nodes, inits as TensorSpec[], opset), data };
  }

  /**
   * The graph as transformers.js's scripts/quantize.py writes its 8-bit files: ONNX Runtime's ONNXQuantizer in
   * IntegerOps mode (dynamic), activations QUInt8, weights of `opts.weightType`, per tensor unless asked
   * otherwise — built here from the fp32 weights because the Python quantizer is not available to this
   * project:
   *
   *   MatMul(x, W)     → DynamicQuantizeLinear(x) → (x_q uint8, x_scale, x_zp)
   *                      MatMulInteger(x_q, W_q, x_zp, W_zp) → int32 → Cast(float) · Mul(x_scale, W_scale)
   *   Conv(x, W, b)    → DynamicQuantizeLinear(x) → ConvInteger(x_q, W_q, x_zp, W_zp) → Cast(float)
   *                      · Mul(x_scale, W_scale) → Add(b)
   *   Gather(T, ids)   → Gather(T_q, ids) → DequantizeLinear(·, T_scale, T_zp)
   *
   * QInt8 weights are symmetric (zero point 0, scale max|w|/127), QUInt8 asymmetric (range [min(w,0),
   * max(w,0)] over 255 steps), as the quantizer's WeightSymmetric default has them. Only MatMuls whose second
   * input is a 2-D float initializer are quantized (the weight projections: MatMulConstBOnly); attention's
   * activation × activation MatMuls, norms and the rest stay float. encode() still gives the fp32 graph.
   */
  encodeQuantized(opts: QuantizeOptions, opset = 17): Uint8Array {
    const byName = new Map(this.initializers.map((t) => [t.name, t]));
    const inits: TensorSpec[] = [];
    const nodes: NodeSpec[] = [];
    const quantized = new Set<string>();
    const signed = opts.weightType === 'int8';
    let k = 0;
    const fresh = (p: string) => `${p}_q${k++}`;
    const floats = (t: TensorSpec) => new Float32Array(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength / 4);
    const tensor = (name: string, dims: number[], dataType: number, data: ArrayBufferView): TensorSpec => ({
      name,
      dims,
      dataType,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    const node = (opType: string, input: string[], output: string[], attribute: unknown[] = []) =>
      nodes.push({ opType, input, output, name: fresh(`n_${opType}`), attribute });
    /** Quantize weight w (groups along its last axis when per channel); returns the initializer names. */
    const quantize = (w: TensorSpec, perChannel: boolean) => {
      const qName = `${w.name}_quantized`;
      const sName = `${w.name}_scale`;
      const zName = `${w.name}_zero_point`;
      if (quantized.has(w.name)) return { qName, sName, zName };
      quantized.add(w.name);
      const data = floats(w);
      const N = perChannel ? w.dims[w.dims.length - 1]! : 1;
      const min = new Float32Array(N);
      const max = new Float32Array(N);
      for (let i = 0; i < data.length; i++) {
        const g = perChannel ? i % N : 0;
        if (data[i]! < min[g]!) min[g] = data[i]!;
        if (data[i]! > max[g]!) max[g] = data[i]!;
      }
      const scale = new Float32Array(N);
      const zero = signed ? new Int8Array(N) : new Uint8Array(N);
      for (let g = 0; g < N; g++) {
        if (signed) {
          const a = Math.max(-min[g]!, max[g]!);
          scale[g] = a > 0 ? a / 127 : 1;
        } else {
          const range = max[g]! - min[g]!;
          scale[g] = range > 0 ? range / 255 : 1;
          zero[g] = Math.round(-min[g]! / scale[g]!);
        }
      }
      const q = signed ? new Int8Array(data.length) : new Uint8Array(data.length);
      const [lo, hi] = signed ? [-127, 127] : [0, 255];
      for (let i = 0; i < data.length; i++) {
        const g = perChannel ? i % N : 0;
        const v = Math.round(data[i]! / scale[g]!) + zero[g]!;
        q[i] = v > hi ? hi : v < lo ? lo : v;
      }
      const type = signed ? INT8 : UINT8;
      const sDims = perChannel ? [N] : [];
      inits.push(tensor(qName, w.dims, type, q));
      inits.push(tensor(sName, sDims, FLOAT, scale));
      inits.push(tensor(zName, sDims, type, zero));
      return { qName, sName, zName };
    };
    const integerOp = (opType: 'MatMulInteger' | 'ConvInteger', x: string, w: { qName: string; sName: string; zName: string }, out: string, attribute: unknown[] = []) => {
      const [xq, xs, xz] = [fresh(`${x}_quantized`), fresh(`${x}_scale`), fresh(`${x}_zero_point`)];
      node('DynamicQuantizeLinear', [x], [xq, xs, xz]);
      const yi = fresh(`${out}_int32`);
      node(opType, [xq, w.qName, xz, w.zName], [yi], attribute);
      const yf = fresh(`${out}_float`);
      node('Cast', [yi], [yf], [{ name: 'to', type: 2, i: FLOAT }]);
      const s = fresh(`${out}_scales`);
      node('Mul', [xs, w.sName], [s]);
      return { yf, s };
    };
    for (const n of this.nodes) {
      const w =
        n.opType === 'MatMul' || n.opType === 'Conv' ? byName.get(n.input[1]!) : n.opType === 'Gather' ? byName.get(n.input[0]!) : undefined;
      const quantizable = w && w.dataType === FLOAT && (n.opType === 'Conv' ? w.dims.length === 4 : w.dims.length === 2);
      if (!w || !quantizable) {
        nodes.push(n);
        continue;
      }
      const out = n.output[0]!;
      if (n.opType === 'Gather') {
        const q = quantize(w, false);
        const g = fresh(`${out}_${opts.weightType}`);
        node('Gather', [q.qName, n.input[1]!], [g], n.attribute);
        node('DequantizeLinear', [g, q.sName, q.zName], [out]);
      } else if (n.opType === 'MatMul') {
        const { yf, s } = integerOp('MatMulInteger', n.input[0]!, quantize(w, opts.perChannel === true), out);
        node('Mul', [yf, s], [out]);
      } else {
        // ConvInteger has no bias input: the float bias is added after the rescale, as the quantizer does
        const { yf, s } = integerOp('ConvInteger', n.input[0]!, quantize(w, false), out, n.attribute);
        const bias = n.input[2];
        if (bias) {
          const scaled = fresh(`${out}_scaled`);
          node('Mul', [yf, s], [scaled]);
          const b = byName.get(bias)!;
          // Conv's bias is [C]; after ConvInteger it is added per channel: reshaped to [C,1,1] as the quantizer does
          const shape = fresh(`${bias}_shape`);
          inits.push(tensor(shape, [3], INT64, BigInt64Array.from([BigInt(b.dims[0]!), 1n, 1n])));
          const b3 = fresh(`${bias}_reshaped`);
          node('Reshape', [bias, shape], [b3]);
          node('Add', [scaled, b3], [out]);
        } else {
          node('Mul', [yf, s], [out]);
        }
      }
    }
    const used = new Set(nodes.flatMap((n) => n.input));
    for (const t of this.initializers) if (!quantized.has(t.name) && used.has(t.name)) inits.push(t);
    return this.encodeGraph(nodes, inits, opset);
  }

  /**
   * The graph in float16, as transformers.js's scripts/quantize.py writes the `*_fp16.onnx` files
   * (onnxconverter-common's convert_float_to_float16 with keep_io_types=True): every float initializer
   * becomes float16 and Casts to float cast to float16, so the tower computes in half precision (on CUDA:
   * tensor cores, half the weight memory), while the graph's float inputs and outputs stay float32, with a
   * Cast after each input and before each output. Integer tensors (ids, shapes) are untouched.
   * `keepIoTypes: false` gives the other form in the wild, float16 inputs and outputs (Optimum's
   * `--dtype fp16` exports), which the engine also runs.
   */
  encodeFloat16(opts: { keepIoTypes?: boolean } = {}, opset = 17): Uint8Array {
    const keepIo = opts.keepIoTypes ?? true;
    const half = (t: TensorSpec): TensorSpec => {
      if (t.dataType !== FLOAT) return t;
      const f = new Float32Array(t.rawData.buffer.slice(t.rawData.byteOffset, t.rawData.byteOffset + t.rawData.byteLength));
      const h = toHalf(f);
      return { ...t, dataType: FLOAT16, rawData: new Uint8Array(h.buffer) };
    };
    type Attr = { name: string; type: number; i?: number; t?: TensorSpec };
    type ValueInfo = { name: string; type: { tensorType: { elemType: number } } };
    if (!keepIo) {
      const io = (vs: unknown[]) =>
        (vs as ValueInfo[]).map((v) =>
          v.type.tensorType.elemType === FLOAT ? { ...v, type: { tensorType: { ...v.type.tensorType, elemType: FLOAT16 } } } : v,
        );
      const nodes = this.nodes.map((n) => ({
        ...n,
        attribute: (n.attribute as Attr[]).map((a) =>
          n.opType === 'Cast' && a.name === 'to' && a.i === FLOAT ? { ...a, i: FLOAT16 } : a.t ? { ...a, t: half(a.t) } : a,
        ),
      }));
      return this.encodeGraph(nodes, this.initializers.map(half), opset, io(this.inputs), io(this.outputs));
    }
    const floatInputs = (this.inputs as ValueInfo[]).filter((v) => v.type.tensorType.elemType === FLOAT).map((v) => v.name);
    const floatOutputs = (this.outputs as ValueInfo[]).filter((v) => v.type.tensorType.elemType === FLOAT).map((v) => v.name);
    // inside the graph, a float input is read as its float16 cast, a float output written under an inner name
    const rename = new Map<string, string>([
      ...floatInputs.map((n): [string, string] => [n, `${n}_fp16`]),
      ...floatOutputs.map((n): [string, string] => [n, `${n}_fp16`]),
    ]);
    const renamed = (x: string) => rename.get(x) ?? x;
    const cast = (from: string, to: string, type: number, name: string): NodeSpec => ({
      opType: 'Cast',
      input: [from],
      output: [to],
      name,
      attribute: [{ name: 'to', type: 2, i: type }],
    });
    const nodes = [
      ...floatInputs.map((n) => cast(n, `${n}_fp16`, FLOAT16, `graph_input_cast_${n}`)),
      ...this.nodes.map((n) => ({
        ...n,
        input: n.input.map(renamed),
        output: n.output.map(renamed),
        attribute: (n.attribute as Attr[]).map((a) =>
          n.opType === 'Cast' && a.name === 'to' && a.i === FLOAT ? { ...a, i: FLOAT16 } : a.t ? { ...a, t: half(a.t) } : a,
        ),
      })),
      ...floatOutputs.map((n) => cast(`${n}_fp16`, n, FLOAT, `graph_output_cast_${n}`)),
    ];
    return this.encodeGraph(nodes, this.initializers.map(half), opset);
  }

  private encodeGraph(
    nodes: NodeSpec[],
    initializers: TensorSpec[],
    opset: number,
    inputs: unknown[] = this.inputs,
    outputs: unknown[] = this.outputs,
  ): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'visual-product-search/scripts/models',
      opsetImport: [{ domain: '', version: opset }],
      graph: {
        name: this.name,
        node: nodes,
        initializer: initializers,
        input: inputs,
        output: outputs,
      } as never,
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
