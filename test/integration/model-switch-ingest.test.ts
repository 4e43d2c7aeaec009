/**
 * The model switch and ingest: an ingest that chose its models before a switch committed must not leave a
 * product without a vector for the newly active model; and an upsert with an image when the active model's
 * files are not loaded fails with MODEL_UNAVAILABLE, storing nothing.
 *
 * @backend the switch lock between ingest and a model switch
 */
import fs from 'node:fs/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestContext } from '../../src/catalog/ingest.js';
import { ingestProducts } from '../../src/catalog/ingest.js';
import type { ProductInputLike } from '../../src/catalog/validate.js';
import { setModelStatus } from '../../src/db/models.js';
import { createLogger } from '../../src/log.js';
import { ModelService } from '../../src/models/service.js';
import { startTestService, type TestService } from '../support/service.js';
import { catalogInputs, writeModelA } from './reindex-support.js';

let t: TestService;
let A: { dir: string; id: string };
let B: { dir: string; id: string };

beforeAll(async () => {
  A = await writeModelA();
  B = await writeModelA(); // another id, same shape: a second model this process loads
  t = await startTestService({}, { model: A.dir });
}, 120_000);
afterAll(async () => {
  await t?.stop();
  for (const m of [A, B]) if (m) await fs.rm(m.dir, { recursive: true, force: true });
});

const services = () => t.service.services;
const ctxWith = (models: ModelService): IngestContext => ({
  db: services().database.db,
  models,
  fetchOptions: services().fetchOptions,
  imageLimits: services().imageLimits,
});
async function vectorsOf(sku: string): Promise<string[]> {
  const r = await sql<{ model_id: string }>`
    SELECT e.model_id FROM products p JOIN product_embeddings e ON e.product_id = p.id WHERE p.sku = ${sku} ORDER BY 1`.execute(
    services().database.db,
  );
  return r.rows.map((x) => x.model_id);
}

describe('model switch vs ingest', () => {
  it('an ingest racing a switch ends with a vector for the newly active model', async () => {
    const models = services().models;
    await models.addDir(B.dir);
    // built earlier with activate: false (nothing to embed in an empty catalog): ingest does not embed for it
    await setModelStatus(services().database.db, B.id, 'ready');
    expect((await models.activeModel())?.id).toBe(A.id);

    // Park the ingest right after it has read its targets (A only), switch to B meanwhile, then let it go on.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let parked!: () => void;
    const isParked = new Promise<void>((r) => (parked = r));
    let first = true;
    const racing = Object.create(models) as ModelService;
    racing.writeTargets = async () => {
      const targets = await models.writeTargets();
      if (first) {
        first = false;
        expect(targets.map((x) => x.id)).toEqual([A.id]);
        parked();
        await gate;
      }
      return targets;
    };
    const [input] = (await catalogInputs(1, 9, 'RACE')) as unknown as ProductInputLike[];
    const ingest = ingestProducts(ctxWith(racing), [input!]);
    await isParked;
    await models.activate(B.id, { requireLoaded: true }); // no product is missing a B vector yet: allowed
    release();
    await ingest;

    expect((await models.activeModel())?.id).toBe(B.id);
    expect(await vectorsOf('RACE-00000')).toContain(B.id);
    const missing = await sql<{ n: string }>`
      SELECT count(*) AS n FROM products p WHERE p.image_sha256 IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM product_embeddings e WHERE e.product_id = p.id AND e.model_id = ${B.id})`.execute(
      services().database.db,
    );
    expect(Number(missing.rows[0]!.n)).toBe(0);
  }, 60_000);

  it('an upsert with an image fails with MODEL_UNAVAILABLE when the active model is not loaded, storing nothing', async () => {
    // a process that has not loaded the active model (e.g. started without EMBEDDING_MODEL_DIR)
    const bare = new ModelService(services().database, createLogger('silent'));
    const [withImage] = (await catalogInputs(1, 3, 'NOMODEL')) as unknown as ProductInputLike[];
    await expect(ingestProducts(ctxWith(bare), [withImage!])).rejects.toMatchObject({ code: 'MODEL_UNAVAILABLE' });
    const found = await services().database.db.selectFrom('products').select('sku').where('sku', 'like', 'NOMODEL-%').execute();
    expect(found).toEqual([]);
    // a product without an image needs no vector: still stored
    const stored = await ingestProducts(ctxWith(bare), [{ sku: 'NOMODEL-TEXT', title: 'x', category: 'bags' }]);
    expect(stored.map((p) => p.sku)).toEqual(['NOMODEL-TEXT']);
  });
});
