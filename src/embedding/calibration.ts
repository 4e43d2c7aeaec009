/**
 * SigLIP's calibration: the logit scale (log space, as the model's parameter: ~4.7 trained) and bias that
 * turn a cosine into the sigmoid loss's probability, sigmoid(exp(logit_scale)·cos + logit_bias). They are
 * weights, not config: the hub's exported vision and text towers drop them (only the combined
 * onnx/model.onnx, which computes logits_per_image, carries them), so a real checkpoint's directory rarely
 * says them. Looked up in this order, the first that answers wins:
 *
 *   1. the user's setting (EMBEDDING_LOGIT_SCALE / EMBEDDING_LOGIT_BIAS, for the configured model);
 *   2. config.json, where an export writes logit_scale / logit_bias there;
 *   3. a side file: any JSON file whose name mentions "logit", in the directory or onnx/, with numeric
 *      logit_scale / logit_bias (top level or under one key), as some exports ship them;
 *   4. the combined onnx/model.onnx, where the directory has it: read from the graph (readCombinedModel);
 *   5. the table of checkpoints whose values are published (KNOWN_CALIBRATIONS), by repository id;
 *   6. none: matchProbability is null, and the reason is logged when the model loads.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface Calibration {
  /** log(scale), as the model's parameter. */
  logitScale: number;
  logitBias: number;
}

export type CalibrationResult = (Calibration & { source: string }) | { reason: string };

/**
 * Checkpoints whose calibration is published, by repository id (the hub export and the checkpoint it was
 * converted from carry the same weights). Each value with its source.
 */
export const KNOWN_CALIBRATIONS: Record<string, Calibration & { source: string }> = (() => {
  // google/siglip2-base-patch16-224: the checkpoint's own logit_scale and logit_bias parameters, as its
  // model card's zero-shot example computes them (logit_scale 4.724453449249268 in log space, i.e.
  // exp = 112.6689; bias −16.771724700927734); the same two float32 constants sit in
  // onnx-community/siglip2-base-patch16-224-ONNX's combined onnx/model.onnx (Mul by 112.66889953613281,
  // Add −16.771724700927734 before logits_per_text), as published analyses of that file report.
  const base224 = { logitScale: 4.724453449249268, logitBias: -16.771724700927734, source: 'published (google/siglip2-base-patch16-224)' };
  // google/siglip2-large-patch16-384 and google/siglip2-so400m-patch14-384: the parameters as read from
  // the checkpoints and published beside their repository ids in a public project's scoring table
  // (SIGLIP2_SCORING_METADATA: large 4.6823530197143555 / −16.347614288330078, so400m 4.699519157409668 /
  // −15.932647705078125).
  const large384 = {
    logitScale: 4.6823530197143555,
    logitBias: -16.347614288330078,
    source: 'published (google/siglip2-large-patch16-384)',
  };
  const so400m384 = {
    logitScale: 4.699519157409668,
    logitBias: -15.932647705078125,
    source: 'published (google/siglip2-so400m-patch14-384)',
  };
  return {
    'google/siglip2-base-patch16-224': base224,
    'onnx-community/siglip2-base-patch16-224-ONNX': base224,
    'google/siglip2-large-patch16-384': large384,
    'onnx-community/siglip2-large-patch16-384-ONNX': large384,
    'google/siglip2-so400m-patch14-384': so400m384,
    'onnx-community/siglip2-so400m-patch14-384-ONNX': so400m384,
  };
})();

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
/** A number, or a one-element array of one (how tensors are often dumped to JSON). */
const scalarOf = (v: unknown): number | undefined => num(Array.isArray(v) && v.length === 1 ? v[0] : v);
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** A scale above 20 cannot be a log (exp(20) ≈ 5·10⁸): it is the already-exponentiated factor. */
const logScale = (scale: number) => (scale > 20 ? Math.log(scale) : scale);

function pick(o: Record<string, unknown>): Calibration | null {
  const scale = scalarOf(o['logit_scale']);
  const bias = scalarOf(o['logit_bias']);
  return scale === undefined || bias === undefined ? null : { logitScale: logScale(scale), logitBias: bias };
}

async function sideFile(dir: string): Promise<(Calibration & { source: string }) | null> {
  for (const sub of ['', 'onnx']) {
    let names: string[];
    try {
      names = (await readdir(join(dir, sub))).filter((n) => /logit/i.test(n) && n.endsWith('.json')).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const rel = sub ? `${sub}/${name}` : name;
      let value: Record<string, unknown>;
      try {
        value = obj(JSON.parse(await readFile(join(dir, rel), 'utf8')));
      } catch {
        continue; // not ours to refuse the model for: the calibration is optional
      }
      const found =
        pick(value) ??
        Object.values(value)
          .map((v) => pick(obj(v)))
          .find((x) => x !== null) ??
        null;
      if (found) return { ...found, source: rel };
    }
  }
  return null;
}

export async function findCalibration(opts: {
  dir: string;
  config: Record<string, unknown>;
  repoId: string;
  override?: Calibration;
}): Promise<CalibrationResult> {
  if (opts.override) return { ...opts.override, source: 'setting (EMBEDDING_LOGIT_SCALE / EMBEDDING_LOGIT_BIAS)' };
  const inConfig = pick(opts.config);
  if (inConfig) return { ...inConfig, source: 'config.json' };
  const side = await sideFile(opts.dir);
  if (side) return side;
  const combined = join(opts.dir, 'onnx', 'model.onnx');
  if (
    await stat(combined).then(
      (s) => s.isFile(),
      () => false,
    )
  ) {
    try {
      const found = await readCombinedModel(combined);
      if (found) return { ...found, source: 'onnx/model.onnx' };
    } catch {
      /* an unreadable combined graph is not a reason to refuse the towers: the table may still know it */
    }
  }
  const known = KNOWN_CALIBRATIONS[opts.repoId];
  if (known) return known;
  return {
    reason:
      `no logit_scale/logit_bias for ${opts.repoId}: not in config.json, no logit*.json side file, no combined onnx/model.onnx, ` +
      'not a checkpoint with published values; set EMBEDDING_LOGIT_SCALE and EMBEDDING_LOGIT_BIAS to enable matchProbability',
  };
}

// --- the combined graph ------------------------------------------------------------------------------
//
// Read with positioned reads rather than decoded whole: the combined export is ~1.5 GB, almost all of it
// weights, and the two constants are needed once at load. The protobuf walk below reads only what the
// ONNX schema (onnx.proto) says leads to them — ModelProto.graph (7) → GraphProto.node (1: input 1,
// output 2, op_type 4) and .initializer (5: TensorProto dims 1, data_type 2, float_data 4, name 8,
// raw_data 9), skipping every other field by its length; no protobuf library reads a message lazily
// from a file, hence this.

class PositionedReader {
  private buf = Buffer.alloc(0);
  private at = 0;
  constructor(private readonly fh: import('node:fs/promises').FileHandle) {}

  private async ensure(pos: number, len: number): Promise<void> {
    if (pos >= this.at && pos + len <= this.at + this.buf.length) return;
    const size = Math.max(len, 1 << 16);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await this.fh.read(buf, 0, size, pos);
    this.buf = buf.subarray(0, bytesRead);
    this.at = pos;
    if (bytesRead < len) throw new Error('truncated ONNX file');
  }

  async bytes(pos: number, len: number): Promise<Buffer> {
    await this.ensure(pos, len);
    return this.buf.subarray(pos - this.at, pos - this.at + len);
  }

  /** A varint at pos: its value (as a number: lengths and tags fit) and the position after it. */
  async varint(pos: number): Promise<[number, number]> {
    await this.ensure(pos, 1);
    let value = 0;
    let mul = 1;
    for (let p = pos; ; p++) {
      if (p >= this.at + this.buf.length) await this.ensure(p, 1);
      const b = this.buf[p - this.at]!;
      value += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return [value, p + 1];
      if (p - pos > 9) throw new Error('bad varint');
    }
  }
}

interface Field {
  field: number;
  wire: number;
  /** varint value, or the start of a length-delimited payload */
  value: number;
  length: number;
  next: number;
}

async function* fields(r: PositionedReader, start: number, end: number): AsyncGenerator<Field> {
  let pos = start;
  while (pos < end) {
    const [tag, p] = await r.varint(pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      const [value, q] = await r.varint(p);
      yield { field, wire, value, length: 0, next: q };
      pos = q;
    } else if (wire === 2) {
      const [length, q] = await r.varint(p);
      yield { field, wire, value: q, length, next: q + length };
      pos = q + length;
    } else if (wire === 1 || wire === 5) {
      const length = wire === 1 ? 8 : 4;
      yield { field, wire, value: p, length, next: p + length };
      pos = p + length;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

const FLOAT = 1;
const FLOAT16 = 10;

interface GraphNode {
  op: string;
  inputs: string[];
  outputs: string[];
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * The combined graph's calibration: walk back from logits_per_text (or logits_per_image, through its
 * Transpose) — logits = MatMul(text, imageᵀ) · exp(logit_scale) + logit_bias — taking the scalar
 * constant of the Add as the bias and that of the Mul as the scale (constant-folded exp, or an Exp of the
 * log-space parameter). Names are not relied on: exporters fold and rename these constants.
 */
export async function readCombinedModel(path: string): Promise<Calibration | null> {
  const fh = await open(path, 'r');
  try {
    const r = new PositionedReader(fh);
    const size = (await fh.stat()).size;
    let graph: Field | null = null;
    for await (const f of fields(r, 0, size)) if (f.field === 7 && f.wire === 2) graph = f;
    if (!graph) return null;
    const nodes: GraphNode[] = [];
    const scalars = new Map<string, number>();
    const decoder = new TextDecoder();
    for await (const f of fields(r, graph.value, graph.value + graph.length)) {
      if (f.wire !== 2) continue;
      if (f.field === 1 && f.length < 1 << 20) {
        const node: GraphNode = { op: '', inputs: [], outputs: [] };
        for await (const g of fields(r, f.value, f.next)) {
          if (g.wire !== 2) continue;
          const text = () => r.bytes(g.value, g.length).then((b) => decoder.decode(b));
          if (g.field === 1) node.inputs.push(await text());
          else if (g.field === 2) node.outputs.push(await text());
          else if (g.field === 4) node.op = await text();
        }
        nodes.push(node);
      } else if (f.field === 5) {
        let name = '';
        let type = 0;
        let count = 1;
        let raw: Buffer | null = null;
        let floats: Buffer | null = null;
        for await (const g of fields(r, f.value, f.next)) {
          if (g.field === 1)
            count *= g.wire === 0 ? g.value : 2; // packed dims: more than one, not a scalar
          else if (g.field === 2 && g.wire === 0) type = g.value;
          else if (g.field === 8 && g.wire === 2) name = decoder.decode(await r.bytes(g.value, g.length));
          else if (g.field === 9 && g.wire === 2 && g.length <= 8) raw = Buffer.from(await r.bytes(g.value, g.length));
          else if (g.field === 4 && g.length === 4) floats = Buffer.from(await r.bytes(g.value, 4));
        }
        if (count !== 1 || !name) continue;
        if (type === FLOAT && (raw?.length === 4 || floats)) scalars.set(name, (raw ?? floats)!.readFloatLE(0));
        else if (type === FLOAT16 && raw?.length === 2) scalars.set(name, halfToFloat(raw.readUInt16LE(0)));
      }
    }
    const producer = new Map<string, GraphNode>();
    for (const n of nodes) for (const o of n.outputs) producer.set(o, n);
    let at = producer.get('logits_per_text') ?? producer.get('logits_per_image');
    let bias: number | undefined;
    let logitScale: number | undefined;
    for (let hops = 0; at && hops < 8; hops++) {
      const constant = at.inputs.find((i) => scalars.has(i));
      const other = at.inputs.find((i) => !scalars.has(i) && producer.get(i)?.op !== 'Exp');
      if (at.op === 'Add' && constant !== undefined && bias === undefined) bias = scalars.get(constant);
      if (at.op === 'Mul') {
        if (constant !== undefined) logitScale = logScale(scalars.get(constant)!);
        else {
          const exp = at.inputs.map((i) => producer.get(i)).find((n) => n?.op === 'Exp' && scalars.has(n.inputs[0]!));
          if (exp) logitScale = scalars.get(exp.inputs[0]!);
        }
      }
      if (at.op === 'MatMul' || (bias !== undefined && logitScale !== undefined)) break;
      at = other === undefined ? undefined : producer.get(other);
    }
    return bias !== undefined && logitScale !== undefined ? { logitScale, logitBias: bias } : null;
  } finally {
    await fh.close();
  }
}
