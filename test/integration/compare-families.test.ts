/**
 * The article's comparison on one catalog, end to end over HTTP: SigLIP 2 FixRes (the active model),
 * SigLIP v1 at 384 px and SigLIP 2 NaFlex (generated compute-faithful graphs in their hub layouts, placed
 * in the model cache), each built with reindex(activate: false), then one compareModels request answered
 * by all three.
 */
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeSiglipVisionModel } from '../../scripts/models/siglip-vision.js';
import { writeNaflexModel } from '../../scripts/models/siglip2-naflex.js';
import { modelCachePath } from '../../src/hub/paths.js';
import { startTestService, type TestService } from '../support/service.js';
import { catalogInputs, JOB, MODELS, REINDEX, sleep, UPSERT, writeModelA } from './reindex-support.js';

let t: TestService;
let A: { dir: string; id: string };
const tag = randomBytes(3).toString('hex');
const V1 = `vps/siglip-v1-384-${tag}`;
const NAFLEX = `vps/siglip2-naflex-${tag}`;
const dirs: string[] = [];

const COMPARE = `query($models: [ID!], $image: ImageInput, $text: String, $k: Int) {
  compareModels(models: $models, image: $image, text: $text, k: $k) {
    results { model dimension matches { score matchProbability product { id } } }
    overlap { models shared jaccard rankCorrelation } sharedByAll } }`;

async function build(model: string) {
  const started = await t.gql(REINDEX, { model, activate: false }, { admin: true });
  expect(started.errors).toBeUndefined();
  for (let i = 0; i < 1200; i++) {
    const j = (await t.gql(JOB, { id: started.data.reindex.id }, { admin: true })).data.reindexJob;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(j.state)) return j;
    await sleep(100);
  }
  throw new Error('job did not finish');
}

beforeAll(async () => {
  A = await writeModelA();
  const small = { hidden: 48, layers: 1, heads: 2, mlp: 96 };
  dirs.push(modelCachePath(V1), modelCachePath(NAFLEX));
  await writeSiglipVisionModel(modelCachePath(V1), { ...small, family: 'siglip', imageSize: 384, quantized: false, modelId: V1 });
  await writeNaflexModel(modelCachePath(NAFLEX), { ...small, maxNumPatches: 64, modelId: NAFLEX });
  t = await startTestService({ REINDEX_BATCH_SIZE: '8', JOBS_POLL_INTERVAL_MS: '500' }, { model: A.dir });
  const res = await t.gql(UPSERT, { p: await catalogInputs(12, 17, 'F') }, { admin: true });
  expect(res.errors).toBeUndefined();
  for (const m of [V1, NAFLEX]) expect(await build(m)).toMatchObject({ state: 'SUCCEEDED', activated: false, processed: 12 });
}, 240_000);
afterAll(async () => {
  await t?.stop();
  for (const d of [A?.dir, ...dirs]) if (d) await fs.rm(d, { recursive: true, force: true });
});

it('builds both families and both SigLIP 2 variants side by side', async () => {
  const models = (await t.gql(MODELS, {}, { admin: true })).data.models as Array<{ id: string; status: string; vectors: number }>;
  expect(models.find((m) => m.id === V1)).toMatchObject({ status: 'READY', vectors: 12 });
  expect(models.find((m) => m.id === NAFLEX)).toMatchObject({ status: 'READY', vectors: 12 });
});

it('answers one image query with all three models and reports their overlap', async () => {
  const product = (await t.gql(`{ products(first: 1) { edges { node { id } } } }`)).data.products.edges[0].node.id;
  const r = await t.gql(COMPARE, { models: [A.id, V1, NAFLEX], image: { productId: product }, k: 5 });
  expect(r.errors).toBeUndefined();
  const c = r.data.compareModels;
  expect(c.results.map((x: { model: string }) => x.model)).toEqual([A.id, V1, NAFLEX]);
  for (const res of c.results) {
    expect(res.matches).toHaveLength(5);
    expect(res.matches[0].product.id).toBe(product);
  }
  expect(c.overlap.map((o: { models: string[] }) => o.models)).toEqual([
    [A.id, V1],
    [A.id, NAFLEX],
    [V1, NAFLEX],
  ]);
  expect(c.sharedByAll[0]).toBe(product);
  for (const o of c.overlap) expect(o.jaccard).toBeGreaterThan(0);
});

it('answers a text query with each; NaFlex calibrates with the logit scale and bias of its side file', async () => {
  const r = await t.gql(COMPARE, { models: [V1, NAFLEX], text: 'Red, leather bag!', k: 3 });
  expect(r.errors).toBeUndefined();
  const [v1, naflex] = r.data.compareModels.results;
  expect(v1.matches).toHaveLength(3);
  expect(naflex.matches[0].matchProbability).toBeGreaterThan(0);
  expect(v1.matches[0].matchProbability).toBeNull(); // the v1 export here carries no calibration
});
