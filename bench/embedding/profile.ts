/**
 * Where end-to-end time goes for one 640×480 JPEG on the B/16-224 tower: decode (sharp), the Pillow
 * resize (resize.ts), normalisation, and inference per variant, each as wall and CPU time per image
 * (process.cpuUsage: all threads of this process), so a loaded machine shows in wall time only.
 *
 *   npx tsx bench/embedding/profile.ts [--reps 20]
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeForModel } from '../../src/images/embed.js';
import { loadModelDir } from '../../src/embedding/model-dir.js';
import { resizeForModel, rgbToTensor } from '../../src/embedding/preprocess.js';
import { arg } from '../lib/report.js';
import { ensureB16, loadLine, median, photoJpegs, table } from './common.js';

console.log(`start: ${loadLine()}`);
const reps = Number(arg('reps', '20'));
const dir = await ensureB16();
const files = await loadModelDir(dir, 'fp32');
const spec = files.preprocess;
const limits = { maxImageBytes: 20 * 1024 * 1024, maxImagePixels: 40_000_000 };
const jpegs = await photoJpegs(8, 640, 480, 11);

async function stage(name: string, n: number, fn: (i: number) => unknown): Promise<Record<string, string | number>> {
  for (let i = 0; i < Math.min(3, n); i++) await fn(i); // warm-up (JIT)
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < n; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn(i);
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { stage: name, 'wall ms (median)': median(wall), 'CPU ms (median)': median(cpu) };
}

const decoded = await Promise.all(jpegs.map((j) => decodeForModel(j, limits)));
const resized = decoded.map((d) => resizeForModel(d, spec));
const rows = [
  await stage('decode 640×480 JPEG (sharp)', reps, (i) => decodeForModel(jpegs[i % 8]!, limits)),
  await stage('resize 640×480 → 224 (resize.ts)', reps, (i) => resizeForModel(decoded[i % 8]!, spec)),
  await stage('normalise 224² → float CHW', reps, (i) => rgbToTensor(resized[i % 8]!, 224, 224, spec)),
  await stage('copy one tensor into a batch buffer', reps, () => new Float32Array(8 * 150528).set(new Float32Array(150528), 150528)),
];
const S = 224;
for (const [variant, file] of [
  ['fp32', 'vision_model.onnx'],
  ['int8', 'vision_model_quantized.onnx'],
] as const) {
  const session = await ort.InferenceSession.create(resolve(dir, 'onnx', file), {
    executionProviders: ['cpu'],
    intraOpNumThreads: availableParallelism(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  for (const b of [1, 8]) {
    const feeds = { pixel_values: new ort.Tensor('float32', new Float32Array(b * 3 * S * S).fill(0.1), [b, 3, S, S]) };
    const r = await stage(`inference ${variant}, batch ${b} (per image)`, Math.max(3, Math.round(reps / b)), () => session.run(feeds));
    rows.push({ ...r, 'wall ms (median)': (r['wall ms (median)'] as number) / b, 'CPU ms (median)': (r['CPU ms (median)'] as number) / b });
  }
  await session.release();
}
table(`Per-image cost by stage (${availableParallelism()} cores)`, rows);
console.log(`end: ${loadLine()}`);
