/**
 * End-to-end image embedding, ours vs the peer in the same run: transformers.js (@huggingface/transformers,
 * SiglipVisionModel + AutoProcessor) loading the same model directory (SigLIP 2 B/16-224 tower, random
 * weights) and embedding the same JPEGs, same intra-op thread count, CPU.
 *
 *   npx tsx bench/embedding/peer.ts
 */
import { availableParallelism } from 'node:os';
import { basename, dirname } from 'node:path';
import { AutoProcessor, RawImage, SiglipVisionModel, env } from '@huggingface/transformers';
import { createEmbedder, defaultEmbedderOptions } from '../../src/embedding/index.js';
import { ensureB16, loadLine, median, photoJpegs, table } from './common.js';
import { embedImageBytes } from '../../src/images/embed.js';

const threads = availableParallelism();
const dir = await ensureB16();
const jpegs = await photoJpegs(8, 640, 480, 11);
const B = 8;

// Both engines are loaded side by side and measured alternately (ours, peer, ours, peer, …) so that
// background load on a shared machine hits both alike; medians are reported.
const ours = await createEmbedder({
  ...defaultEmbedderOptions(),
  modelDir: dir,
  intraOpThreads: threads,
  workers: 1,
  maxBatch: B,
  maxWaitMs: 5,
});
env.allowRemoteModels = false;
env.localModelPath = dirname(dir) + '/';
const model = await SiglipVisionModel.from_pretrained(basename(dir), {
  dtype: 'fp32',
  device: 'cpu',
  session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
} as never);
const processor = await AutoProcessor.from_pretrained(basename(dir));
const peerEmbed = async (bufs: Buffer[]) => {
  const imgs = await Promise.all(bufs.map((b) => RawImage.fromBlob(new Blob([b]))));
  // transformers.js types model outputs as `any`: name the one field read here.
  const out = (await model(await processor(imgs))) as { pooler_output: unknown };
  return out.pooler_output;
};
await peerEmbed([jpegs[0]!]); // warm-up, as ours warms up at start

const modes: [string, number, () => Promise<unknown>, () => Promise<unknown>][] = [
  [
    'one image per call, sequential (3 images)',
    3,
    async () => {
      for (const j of jpegs.slice(0, 3)) await embedImageBytes(ours, [j]);
    },
    async () => {
      for (const j of jpegs.slice(0, 3)) await peerEmbed([j]);
    },
  ],
  [`one call with ${B} images`, B, () => embedImageBytes(ours, jpegs), () => peerEmbed(jpegs)],
  [
    `${B} concurrent single-image calls`,
    B,
    () => Promise.all(jpegs.map((j) => embedImageBytes(ours, [j]))),
    () => Promise.all(jpegs.map((j) => peerEmbed([j]))),
  ],
];
const reps = Number(process.env.BENCH_REPS ?? 3);
const rows: Record<string, string | number>[] = [];
for (const [name, n, a, b] of modes) {
  const ta: number[] = [];
  const tb: number[] = [];
  const ca: number[] = [];
  const cb: number[] = [];
  for (let r = 0; r < reps; r++) {
    let c0 = process.cpuUsage();
    let t0 = performance.now();
    await a();
    ta.push(performance.now() - t0);
    let c = process.cpuUsage(c0);
    ca.push((c.user + c.system) / 1000);
    c0 = process.cpuUsage();
    t0 = performance.now();
    await b();
    tb.push(performance.now() - t0);
    c = process.cpuUsage(c0);
    cb.push((c.user + c.system) / 1000);
  }
  const ma = median(ta);
  const mb = median(tb);
  rows.push({
    mode: name,
    'ours images/s': (n * 1000) / ma,
    'transformers.js images/s': (n * 1000) / mb,
    'ratio ours/peer (median)': `${(mb / ma).toFixed(2)}×`,
    'per-rep ratios': ta.map((x, i) => (tb[i]! / x).toFixed(2)).join(' '),
    'CPU ms/image ours': Math.round(median(ca) / n),
    'CPU ms/image peer': Math.round(median(cb) / n),
  });
}
await ours.close();
table(`End-to-end image embedding from 640×480 JPEGs, SigLIP 2 B/16-224 (random weights), ${threads} threads, CPU`, rows);
console.log(loadLine());
