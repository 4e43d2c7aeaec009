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
import { ensureB16, median, photoJpegs, table } from './common.js';

const threads = availableParallelism();
const dir = await ensureB16();
const jpegs = await photoJpegs(8, 640, 480, 11);
const B = 8;

async function timeIt(fn: () => Promise<unknown>, reps: number) {
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

// ---- ours
const ours = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir, intraOpThreads: threads, workers: 1, maxBatch: B, maxWaitMs: 5 });
const oursOne = await timeIt(async () => { for (const j of jpegs.slice(0, 3)) await ours.embedImages([j]); }, 2);
const oursBatch = await timeIt(() => ours.embedImages(jpegs), 3);
const oursConc = await timeIt(() => Promise.all(jpegs.map((j) => ours.embedImages([j]))), 3);
await ours.close();

// ---- peer
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
  const out = await model(await processor(imgs));
  return out.pooler_output;
};
await peerEmbed([jpegs[0]!]); // warm-up, as ours warms up at start
const peerOne = await timeIt(async () => { for (const j of jpegs.slice(0, 3)) await peerEmbed([j]); }, 2);
const peerBatch = await timeIt(() => peerEmbed(jpegs), 3);
const peerConc = await timeIt(() => Promise.all(jpegs.map((j) => peerEmbed([j]))), 2);

const row = (name: string, ms: number, n: number, peerMs: number) => ({
  mode: name,
  'ours images/s': (n * 1000) / ms,
  'transformers.js images/s': (n * 1000) / peerMs,
  'ratio ours/peer': `${(peerMs / ms).toFixed(2)}×`,
});
table(`End-to-end image embedding from 640×480 JPEGs, SigLIP 2 B/16-224 (random weights), ${threads} threads, CPU`, [
  row('one image per call, sequential', oursOne, 3, peerOne),
  row(`one call with ${B} images`, oursBatch, B, peerBatch),
  row(`${B} concurrent single-image calls`, oursConc, B, peerConc),
]);
