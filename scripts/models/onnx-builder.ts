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
  /** One scale per output column of each weight matrix (else one per matrix). */
  perChannel: boolean;
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
   * The graph as ONNX Runtime's `quantize_dynamic` (MatMul and Gather, weights QInt8 symmetric,
   * activations QUInt8) writes it, i.e. the form of the hub's `*_quantized.onnx` exports, built here from
   * the fp32 weights because the Python quantizer is not available to this project:
   *
   *   MatMul(x, W)   → DynamicQuantizeLinear(x) → (x_q uint8, x_scale, x_zp)
   *                    MatMulInteger(x_q, W_q int8, x_zp, W_zp = 0) → int32 → Cast(float)
   *                    · Mul(x_scale, W_scale)                      (ORT fuses all of it into
   *                                                                  DynamicQuantizeMatMul)
   *   Gather(T, ids) → Gather(T_q int8, ids) → DequantizeLinear(·, T_scale, 0)
   *
   * Only MatMuls whose second input is a 2-D float initializer are quantized (the weight projections);
   * attention's activation × activation MatMuls, convolutions, norms and the rest stay float, as they do
   * in the exports. The builder itself is not changed: encode() still gives the fp32 graph.
   */
  encodeQuantized(opts: QuantizeOptions, opset = 17): Uint8Array {
    const byName = new Map(this.initializers.map((t) => [t.name, t]));
    const inits: TensorSpec[] = [];
    const nodes: NodeSpec[] = [];
    const quantized = new Set<string>();
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
    for (const n of this.nodes) {
      const w = n.opType === 'MatMul' ? byName.get(n.input[1]!) : n.opType === 'Gather' ? byName.get(n.input[0]!) : undefined;
      if (!w || w.dataType !== FLOAT || w.dims.length !== 2) {
        nodes.push(n);
        continue;
      }
      const [K, N] = w.dims as [number, number];
      const data = floats(w);
      // symmetric int8: zero point 0, scale = max|w| / 127 (per output column, or per matrix)
      const perChannel = opts.perChannel && n.opType === 'MatMul';
      const groups = perChannel ? N : 1;
      const absMax = new Float32Array(groups);
      for (let i = 0; i < K; i++) {
        for (let j = 0; j < N; j++) {
          const g = perChannel ? j : 0;
          const a = Math.abs(data[i * N + j]!);
          if (a > absMax[g]!) absMax[g] = a;
        }
      }
      const scale = absMax.map((a) => (a > 0 ? a / 127 : 1));
      const q = new Int8Array(K * N);
      for (let i = 0; i < K; i++) {
        for (let j = 0; j < N; j++) {
          const v = Math.round(data[i * N + j]! / scale[perChannel ? j : 0]!);
          q[i * N + j] = v > 127 ? 127 : v < -127 ? -127 : v;
        }
      }
      const qName = `${w.name}_quantized`;
      const sName = `${w.name}_scale`;
      const zName = `${w.name}_zero_point`;
      if (!quantized.has(w.name)) {
        quantized.add(w.name);
        const sDims = perChannel ? [N] : [];
        inits.push(tensor(qName, [K, N], INT8, q));
        inits.push(tensor(sName, sDims, FLOAT, scale));
        inits.push(tensor(zName, sDims, INT8, new Int8Array(groups)));
      }
      const out = n.output[0]!;
      if (n.opType === 'Gather') {
        const g = fresh(`${out}_int8`);
        node('Gather', [qName, n.input[1]!], [g], n.attribute);
        node('DequantizeLinear', [g, sName, zName], [out]);
        continue;
      }
      const x = n.input[0]!;
      const [xq, xs, xz] = [fresh(`${x}_quantized`), fresh(`${x}_scale`), fresh(`${x}_zero_point`)];
      node('DynamicQuantizeLinear', [x], [xq, xs, xz]);
      const yi = fresh(`${out}_int32`);
      node('MatMulInteger', [xq, qName, xz, zName], [yi]);
      const yf = fresh(`${out}_float`);
      node('Cast', [yi], [yf], [{ name: 'to', type: 2, i: FLOAT }]);
      const s = fresh(`${out}_scales`);
      node('Mul', [xs, sName], [s]);
      node('Mul', [yf, s], [out]);
    }
    const used = new Set(nodes.flatMap((n) => n.input));
    for (const t of this.initializers) if (!quantized.has(t.name) && used.has(t.name)) inits.push(t);
    return this.encodeGraph(nodes, inits, opset);
  }

  /**
   * The graph in float16, as the hub's `*_fp16.onnx` exports are (onnxconverter-common's
   * convert_float_to_float16 with keep_io_types off): every float initializer, graph input and output
   * becomes float16, and Casts to float cast to float16, so the whole tower computes in half precision
   * (on CUDA: tensor cores, half the weight memory). Integer tensors (ids, shapes) are untouched.
   */
  encodeFloat16(opset = 17): Uint8Array {
    const half = (t: TensorSpec): TensorSpec => {
      if (t.dataType !== FLOAT) return t;
      const f = new Float32Array(t.rawData.buffer.slice(t.rawData.byteOffset, t.rawData.byteOffset + t.rawData.byteLength));
      const h = toHalf(f);
      return { ...t, dataType: FLOAT16, rawData: new Uint8Array(h.buffer) };
    };
    type Attr = { name: string; type: number; i?: number; t?: TensorSpec };
    const nodes = this.nodes.map((n) => ({
      ...n,
      attribute: (n.attribute as Attr[]).map((a) =>
        n.opType === 'Cast' && a.name === 'to' && a.i === FLOAT ? { ...a, i: FLOAT16 } : a.t ? { ...a, t: half(a.t) } : a,
      ),
    }));
    type ValueInfo = { type: { tensorType: { elemType: number } } };
    const io = (vs: unknown[]) =>
      (vs as ValueInfo[]).map((v) =>
        v.type.tensorType.elemType === FLOAT ? { ...v, type: { tensorType: { ...v.type.tensorType, elemType: FLOAT16 } } } : v,
      );
    return this.encodeGraph(nodes, this.initializers.map(half), opset, io(this.inputs), io(this.outputs));
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
