/**
 * Preprocessing throughput on real-size photos (1200×1600 JPEGs → 224×224 normalised tensors), and how
 * close the resize lands to an independent reference (PIL-style antialiased bilinear, pil-bilinear.ts):
 * mean absolute difference in 8-bit levels. Peer in the same run: transformers.js's SiglipImageProcessor
 * (AutoProcessor on the same model directory) on the same JPEGs.
 *
 *   npx tsx bench/embedding/preprocess.ts
 */
import { availableParallelism } from 'node:os';
import { basename, dirname } from 'node:path';
import sharp from 'sharp';
import { AutoProcessor, RawImage, env } from '@huggingface/transformers';
import { decodeImage } from '../../src/images/decode.js';
import { loadModelDir } from '../../src/embedding/model-dir.js';
import { preprocessImage } from '../../src/images/embed.js';
import { resizeForModel } from '../../src/embedding/preprocess.js';
import { ensureB16, median, photoJpegs, table, loadLine } from './common.js';
import { meanAbsDiff, pilBilinearResize } from './pil-bilinear.js';

const dir = await ensureB16();
const files = await loadModelDir(dir);
const spec = files.preprocess;
const limits = { maxImageBytes: 20 * 1024 * 1024, maxImagePixels: 40_000_000 };
const N = 16;
const jpegs = await photoJpegs(N, 1200, 1600, 3);
const conc = Math.max(2, availableParallelism());

env.allowRemoteModels = false;
env.localModelPath = dirname(dir) + '/';
const processor = await AutoProcessor.from_pretrained(basename(dir));

async function timeIt(fn: () => Promise<unknown>, reps = 3) {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<unknown>) {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

const oursSeq = await timeIt(async () => {
  for (const j of jpegs) await preprocessImage(j, spec, limits);
});
const oursPar = await timeIt(() => pool(jpegs, conc, (j) => preprocessImage(j, spec, limits)));
// transformers.js types processor outputs as `any`; the fidelity check below reads pixel_values.
const peerOne = async (j: Buffer): Promise<unknown> => (await processor(await RawImage.fromBlob(new Blob([j])))) as unknown;
const peerSeq = await timeIt(async () => {
  for (const j of jpegs) await peerOne(j);
});
const peerPar = await timeIt(() => pool(jpegs, conc, peerOne));

// fidelity vs the independent reference, on 4 images
const madOurs: number[] = [];
const madPeer: number[] = [];
for (const j of jpegs.slice(0, 4)) {
  const full = await sharp(j).autoOrient().removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const ref = pilBilinearResize(full.data, full.info.width, full.info.height, spec.width, spec.height);
  const ours = resizeForModel(await decodeImage(j, limits), spec); // the engine's path (Pillow-identical resize.ts)
  madOurs.push(meanAbsDiff(ours, ref));
  const out = await peerOne(j);
  const pv = (out as { pixel_values: { data: Float32Array } }).pixel_values.data; // CHW, normalised
  const plane = spec.width * spec.height;
  const bytes = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < plane; i++) bytes[i * 3 + c] = Math.max(0, Math.min(255, Math.round((pv[c * plane + i]! * 0.5 + 0.5) * 255)));
  madPeer.push(meanAbsDiff(bytes, ref));
}
// what shrink-on-load / other kernels would cost in fidelity (justifies the chosen settings)
const alt: Record<string, string | number>[] = [];
for (const [name, opts] of [
  ['linear, fastShrinkOnLoad=false (ours before resize.ts)', { kernel: 'linear', fastShrinkOnLoad: false }],
  ['linear, fastShrinkOnLoad=true', { kernel: 'linear', fastShrinkOnLoad: true }],
  ['lanczos3 (sharp default)', { kernel: 'lanczos3', fastShrinkOnLoad: false }],
  ['cubic', { kernel: 'cubic', fastShrinkOnLoad: false }],
] as const) {
  const mads: number[] = [];
  for (const j of jpegs.slice(0, 4)) {
    const full = await sharp(j).raw().toBuffer({ resolveWithObject: true });
    const ref = pilBilinearResize(full.data, full.info.width, full.info.height, spec.width, spec.height);
    const got = await sharp(j)
      .resize(spec.width, spec.height, { fit: 'fill', ...opts })
      .raw()
      .toBuffer();
    mads.push(meanAbsDiff(got, ref));
  }
  alt.push({ 'sharp resize': name, 'MAD vs PIL-style reference (levels)': median(mads) });
}

const ips = (ms: number) => (N * 1000) / ms;
table(`Preprocessing: ${N} JPEGs 1200×1600 → 224×224 tensors (${availableParallelism()} cores)`, [
  {
    pipeline: 'ours (sharp decode, resize.ts, preprocess)',
    'images/s sequential': ips(oursSeq),
    [`images/s ${conc} concurrent`]: ips(oursPar),
    'MAD vs reference (levels, median of 4)': median(madOurs),
  },
  {
    pipeline: 'peer: transformers.js SiglipImageProcessor',
    'images/s sequential': ips(peerSeq),
    [`images/s ${conc} concurrent`]: ips(peerPar),
    'MAD vs reference (levels, median of 4)': median(madPeer),
  },
]);
console.log(`\nratio ours/peer: sequential ${(peerSeq / oursSeq).toFixed(2)}×, concurrent ${(peerPar / oursPar).toFixed(2)}×`);
table('Resize settings vs the reference', alt);
console.log(loadLine());
