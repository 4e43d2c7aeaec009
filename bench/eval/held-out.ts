/**
 * Retrieval on a catalog of several photos per product (issue 22): `vps eval --held-out` on the demo's
 * generated catalog, through the real service (upsertProducts, ONNX Runtime, the database).
 *
 *   npx tsx bench/eval/held-out.ts [--products 400] [--photos 4] [--backend pglite|postgres] [--model-dir DIR]
 *
 * Each product of demoProducts (80 distinct looks; past 80 a look comes back with another perturbation,
 * so several products share a look) gets `--photos` views of itself: as generated, then a detail (one
 * side enlarged), a crop, another shot of the detail, a smaller one, … (VIEWS, in that order). The last
 * view is the one held out: the query, a view the catalog then does not show. "best photo" ranks a
 * product by its best other photo, "first photo only" by its first. The views are made, not photographed:
 * with --photos 4 the held-out view is built to resemble view 1 more than the first photo, so the figures
 * show the rule at work on a case known in advance, not how often real catalogs hold such a case. Without --model-dir the tiny generated model is used: its weights are
 * random, so its figures say how the rule behaves on near-duplicate pixels, not what SigLIP 2 would do;
 * give a real checkpoint's directory for that.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { loadEmbedder, startService } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { demoProducts } from '../../src/demo/seed.js';
import { perturb } from '../../src/demo/synthetic-catalog.js';
import { evaluateHeldOut, formatHeldOutTable } from '../../src/eval/held-out.js';
import { createLogger } from '../../src/log.js';
import { arg, printMachine, table } from '../lib/report.js';
import { benchDatabase } from '../search/database.js';

const products = Number(arg('products', '400'));
const photos = Number(arg('photos', '4'));
const backend = arg('backend', 'pglite') as 'postgres' | 'pglite';
const modelDirArg = arg('model-dir', '');

/** A detail shot: the left half of the photo, enlarged to the photo's size (a close-up of one side). */
async function detail(image: Buffer): Promise<Buffer> {
  const { width = 0, height = 0 } = await sharp(image).metadata();
  return sharp(image)
    .extract({ left: 0, top: Math.round(height / 4), width: Math.round(width / 2), height: Math.round(height / 2) })
    .resize(width, height)
    .png()
    .toBuffer();
}

/**
 * The views of a product after its own photo, in order; the last one used is held out. With --photos 4 the
 * held-out view is a second shot of the detail (brighter): the catalog holds the detail as view 1, which
 * the first photo (the whole product) only resembles.
 */
const VIEWS: Array<(image: Buffer) => Promise<Buffer>> = [
  (b) => detail(b),
  (b) => perturb(b, 'crop'),
  async (b) => perturb(await detail(b), 'brighter'),
  (b) => perturb(b, 'resize'),
  async (b) => sharp(b).flop().png().toBuffer(), // mirrored: the other side
];
if (!(photos >= 2 && photos <= VIEWS.length + 1)) throw new Error(`--photos must be 2 to ${VIEWS.length + 1}`);

printMachine();
const { database, stop } = await benchDatabase(backend);
const modelDir = modelDirArg || (await fs.mkdtemp(path.join(os.tmpdir(), 'vps-heldout-model-')));
if (!modelDirArg) await writeTinyModel(modelDir);
const adminToken = `bench-${Math.random().toString(36).slice(2)}-token-0123456789`;
const config = loadConfig({
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  ADMIN_TOKEN: adminToken,
  RATE_LIMIT_POINTS: '1000000000',
  RATE_LIMIT_ADDRESS_POINTS: '1000000000',
});
const log = createLogger('silent');
const service = await startService(config, log, {
  database,
  embedder: { embedder: await loadEmbedder(config, modelDir, log), source: 'bench' },
});
try {
  const catalog = await demoProducts(products);
  const t0 = performance.now();
  const batch = 20;
  for (let start = 0; start < catalog.length; start += batch) {
    const inputs = await Promise.all(
      catalog.slice(start, start + batch).map(async (p) => {
        const views = [p.image, ...(await Promise.all(VIEWS.slice(0, photos - 1).map((v) => v(p.image))))];
        return {
          sku: p.sku,
          title: p.title,
          category: p.category,
          brand: p.brand,
          price: p.price,
          images: views.map((b, j) => ({ image: { base64: b.toString('base64') }, label: `view ${j}` })),
        };
      }),
    );
    const res = await fetch(`${service.http.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ query: `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id } }`, variables: { p: inputs } }),
    });
    const body = (await res.json()) as { errors?: unknown };
    if (body.errors) throw new Error(`seeding failed: ${JSON.stringify(body.errors)}`);
  }
  const seedSeconds = (performance.now() - t0) / 1000;
  const report = await evaluateHeldOut(
    { db: service.services.database.db, models: service.services.models, search: service.services.search },
    { limit: products },
  );
  table(`Catalog (${backend}): ${products} generated products × ${photos} photos`, [
    {
      products,
      photos: products * photos,
      'seeded in': `${seedSeconds.toFixed(0)} s`,
      model: modelDirArg ? path.basename(modelDir) : 'tiny (random weights)',
    },
  ]);
  table(
    `Held-out photo retrieval (the last view of each product held out; exact rankings, top ${report.k})`,
    report.models.flatMap((m) =>
      (
        [
          ['best photo', m.bestPhoto],
          ['first photo only', m.firstPhoto],
        ] as const
      ).map(([rule, x]) => ({
        model: m.model,
        ranking: rule,
        queries: x.queries,
        'recall@1': x.recallAt1.toFixed(3),
        'recall@10': x.recallAt10.toFixed(3),
        'MRR@10': x.mrr.toFixed(3),
      })),
    ),
  );
  console.log(`\n${formatHeldOutTable(report)}`);
} finally {
  await service.stop();
  await stop();
  if (!modelDirArg) await fs.rm(modelDir, { recursive: true, force: true });
}
