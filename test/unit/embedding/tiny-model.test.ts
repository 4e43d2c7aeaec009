import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../../src/embedding/index.js';
import { cleanupDirs, dot, tinyModel } from './helpers.js';
import { embedImageBytes } from '../../../src/images/embed.js';

/** A few dozen distinct synthetic product images: coloured shapes on white at various positions. */
async function syntheticCatalog(): Promise<Buffer[]> {
  const colours = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#111111', '#e377c2', '#bcbd22'];
  const shapes = [
    (c: string) => `<circle cx="160" cy="160" r="110" fill="${c}"/>`,
    (c: string) => `<rect x="40" y="90" width="240" height="140" fill="${c}"/>`,
    (c: string) => `<polygon points="160,30 300,290 20,290" fill="${c}"/>`,
    (c: string) => `<rect x="20" y="20" width="120" height="280" fill="${c}"/><rect x="180" y="200" width="120" height="100" fill="${c}"/>`,
  ];
  const out: Buffer[] = [];
  for (const c of colours)
    for (const s of shapes) {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320"><rect width="320" height="320" fill="#ffffff"/>${s(c)}</svg>`;
      out.push(await sharp(Buffer.from(svg)).jpeg({ quality: 92 }).toBuffer());
    }
  return out; // 32 images
}

const perturbations: [string, (b: Buffer) => Promise<Buffer>][] = [
  ['resize', (b) => sharp(b).resize(200, 200).jpeg().toBuffer()],
  ['crop', (b) => sharp(b).extract({ left: 10, top: 12, width: 296, height: 298 }).jpeg().toBuffer()],
  ['recompress', (b) => sharp(b).jpeg({ quality: 40 }).toBuffer()],
  ['brighter', (b) => sharp(b).modulate({ brightness: 1.1 }).jpeg().toBuffer()],
  ['darker', (b) => sharp(b).modulate({ brightness: 0.9 }).jpeg().toBuffer()],
  ['png', (b) => sharp(b).png().toBuffer()],
];

describe('tiny model is discriminative and stable', () => {
  let e: Embedder;
  beforeAll(async () => {
    e = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: await tinyModel(), intraOpThreads: 1 });
  });
  afterAll(async () => {
    await e.close();
    await cleanupDirs();
  });

  it('keeps perturbed copies nearest to their original among 32 distinct images', async () => {
    const catalog = await syntheticCatalog();
    const vecs = await embedImageBytes(e, catalog);
    let misses = 0;
    let worstMargin = Infinity;
    for (const [name, perturb] of perturbations) {
      const queries = await embedImageBytes(e, await Promise.all(catalog.map(perturb)));
      queries.forEach((q, i) => {
        const sims = vecs.map((v) => dot(q, v));
        const best = sims.indexOf(Math.max(...sims));
        if (best !== i) misses++;
        const others = sims.filter((_, j) => j !== i);
        worstMargin = Math.min(worstMargin, sims[i]! - Math.max(...others));
        if (process.env.TINY_DEBUG && sims[i]! - Math.max(...others) < 0.05)
          console.log(name, i, (sims[i]! - Math.max(...others)).toFixed(3));
      });
    }
    console.log(`tiny-model: misses=${misses} worstMargin=${worstMargin.toFixed(3)}`);
    expect(misses).toBe(0);
    expect(worstMargin).toBeGreaterThan(0.02);
  });

  it('separates distinct images clearly', async () => {
    const catalog = await syntheticCatalog();
    const vecs = await embedImageBytes(e, catalog);
    let maxOff = -1;
    for (let i = 0; i < vecs.length; i++)
      for (let j = i + 1; j < vecs.length; j++) {
        const d = dot(vecs[i]!, vecs[j]!);
        if (process.env.TINY_DEBUG && d > 0.9) console.log('pair', i, j, d.toFixed(3));
        maxOff = Math.max(maxOff, d);
      }
    console.log(`tiny-model: max off-diagonal cosine=${maxOff.toFixed(3)}`);
    expect(maxOff).toBeLessThan(0.95);
  });
});
