/**
 * The similarity hot path (issue 10): one statement per query on both backends. The HNSW settings set
 * inside the statement take effect for its walk and do not leak into the connection; the strategy comes
 * from cached planner statistics that agree with EXPLAIN; a model switch made elsewhere (another
 * replica) is seen by the next query although the active model is cached.
 *
 * @backend the hot-path statement, its settings and planner statistics
 */
import { sql, type KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { deleteModelEmbeddings, vectorLiteral } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import type { FetchImageOptions } from '../../src/images/fetch.js';
import type { ImageLimits } from '../../src/images/decode.js';
import { createLogger } from '../../src/log.js';
import { ModelService } from '../../src/models/service.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { nearestNeighbours, searchNeighbours } from '../../src/search/query.js';
import { SearchService } from '../../src/search/service.js';
import { createTestDatabase } from '../support/test-db.js';
import { seedVectorCatalog } from '../support/vector-catalog.js';
import { embeddingLikeSpace } from '../support/vectors.js';

const N = 4000;
const model = { id: 'test/hot-path-32', dimension: 32 };
const other = { id: 'test/hot-path-32-b', dimension: 32 };
const space = embeddingLikeSpace({ dimension: 32, seed: 11 });
const otherSpace = embeddingLikeSpace({ dimension: 32, seed: 12 });
const categoryOf = (i: number) => (i % 100 === 3 ? 'c1' : i % 10 === 1 ? 'c10' : i % 2 === 0 ? 'half' : 'rest');

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
  await seedVectorCatalog(database.db, {
    n: N,
    skuPrefix: 'hp-',
    category: categoryOf,
    brand: (i) => `brand${i % 7}`,
    price: (i) => i % 100,
    inStock: (i) => i % 4 !== 0,
    models: [
      { ...model, space },
      { ...other, space: otherSpace },
    ],
  });
}, 300_000);
afterAll(() => database?.close());

const query = (j: number) => vectorLiteral(space.query(j));

describe('one statement', () => {
  it('sets the HNSW settings for its own walk only: k = 100 unfiltered and k = 20 at 10 % come back whole from the walk', async () => {
    // Without the settings in the statement, ef_search would be 40 (fewer than 100) and iterative scan off.
    await database.db.connection().execute(async (conn) => {
      const wide = await searchNeighbours(conn, { model, vector: query(1), filter: null, k: 100, strategy: 'hnsw' }, null);
      expect(wide.neighbours).toHaveLength(100);
      expect(wide.fellBack).toBe(false);
      expect(wide.roundTrips).toBe(1);
      const filtered = await searchNeighbours(
        conn,
        { model, vector: query(2), filter: { category: 'c10' }, k: 20, strategy: 'hnsw' },
        null,
      );
      expect(filtered.neighbours).toHaveLength(20);
      expect(filtered.fellBack).toBe(false);
      expect(filtered.neighbours.every((n) => n.product.category === 'c10')).toBe(true);
      // Same connection, next statement: the defaults are back.
      const shown = await sql<{ ef: string }>`SELECT current_setting('hnsw.ef_search') AS ef`.execute(conn);
      expect(shown.rows[0]!.ef).toBe('40');
    });
  });

  it('answers what the step-by-step query answers, products included, in one round trip', async () => {
    const estimator = new SelectivityEstimator(database.db);
    for (const filter of [null, { category: 'c10' }, { category: 'c1', inStock: true }]) {
      const q = { model, vector: query(3), filter, k: 10 };
      const step = await nearestNeighbours(database.db, q);
      const hot = await searchNeighbours(database.db, q, estimator);
      expect(hot.roundTrips).toBe(1);
      expect(hot.modelActive).toBe(true);
      expect(hot.neighbours.map((n) => n.product.id)).toEqual(step.neighbours.map((n) => n.productId));
      expect(hot.neighbours[0]!.product.sku).toMatch(/^hp-/);
    }
  });
});

describe('selectivity estimate from cached statistics', () => {
  it('agrees with EXPLAIN within a factor of 1.5 at every selectivity, and with its strategy', async () => {
    const estimator = new SelectivityEstimator(database.db);
    await estimator.refresh();
    const filters = [
      null,
      { category: 'half' },
      { category: 'c10' },
      { category: 'c1' },
      { categories: ['c1', 'c10'] },
      { category: 'c10', inStock: true },
      { minPrice: 10, maxPrice: 29 },
      { brand: 'brand3', maxPrice: 50 },
      { category: 'missing' },
    ];
    for (const filter of filters) {
      const ours = (await estimator.estimate(model.id, filter))!;
      const plan = await nearestNeighbours(database.db, { model, vector: query(4), filter, k: 10 });
      const theirs = plan.estimatedMatches;
      expect(ours, JSON.stringify(filter)).toBeGreaterThanOrEqual(Math.floor(theirs / 1.5) - 1);
      expect(ours, JSON.stringify(filter)).toBeLessThanOrEqual(Math.ceil(theirs * 1.5) + 1);
    }
  });

  it('says it has no statistics for tables never analysed (the query then asks EXPLAIN)', async () => {
    const fresh = await createTestDatabase();
    try {
      const estimator = new SelectivityEstimator(fresh.db);
      expect(await estimator.estimate(model.id, null)).toBeNull();
    } finally {
      await fresh.close();
    }
  });
});

describe('the cached active model', () => {
  it('is read once, and a switch made by another replica is seen by the next query', async () => {
    // The registry reads of this process's model service: statements on embedding_models, counted.
    let registryReads = 0;
    const counter: KyselyPlugin = {
      transformQuery(args) {
        const from = (args.node as { from?: { froms?: Array<{ table?: { identifier?: { name?: string } } }> } }).from;
        if (from?.froms?.some((f) => f.table?.identifier?.name === 'embedding_models')) registryReads++;
        return args.node;
      },
      transformResult: (args) => Promise.resolve(args.result),
    };
    const models = new ModelService({ ...database, db: database.db.withPlugin(counter) }, createLogger('silent'));
    const search = new SearchService(database.db, models, {} as FetchImageOptions, {} as ImageLimits);
    const productId = String((await sql<{ id: string }>`SELECT id FROM products WHERE sku = 'hp-5'`.execute(database.db)).rows[0]!.id);
    const before = await search.similarToImage({ kind: 'product', id: productId }, { k: 5 });
    expect(before.model).toBe(model.id);
    expect(before.plan.roundTrips).toBe(1);
    expect(before.matches[0]!.product.id).toBe(productId);
    // Read once: the first query read the active model; the next ones take it from the cache.
    expect(registryReads).toBe(1);
    for (let i = 0; i < 3; i++) await search.similarToImage({ kind: 'product', id: productId }, { k: 5 });
    expect(registryReads).toBe(1);
    // Another process switches the model: this process's cache still names the old one.
    await activateModel(database.db, other.id);
    try {
      expect((await models.cachedActiveModel())!.id).toBe(model.id);
      const after = await search.similarToImage({ kind: 'product', id: productId }, { k: 5 });
      expect(after.model).toBe(other.id);
      expect(after.matches[0]!.product.id).toBe(productId);
      expect((await models.cachedActiveModel())!.id).toBe(other.id);
      // The switch cost one fresh read; after it, the new model is cached in turn.
      const afterSwitch = registryReads;
      expect(afterSwitch).toBe(2);
      for (let i = 0; i < 3; i++) await search.similarToImage({ kind: 'product', id: productId }, { k: 5 });
      expect(registryReads).toBe(afterSwitch);
    } finally {
      await activateModel(database.db, model.id);
    }
  });

  it('sees the switch even when the old model’s vectors are gone before the query (no NOT_FOUND from a stale cache)', async () => {
    const models = new ModelService(database, createLogger('silent'));
    const search = new SearchService(database.db, models, {} as FetchImageOptions, {} as ImageLimits);
    const productId = String((await sql<{ id: string }>`SELECT id FROM products WHERE sku = 'hp-8'`.execute(database.db)).rows[0]!.id);
    expect((await models.cachedActiveModel())!.id).toBe(model.id);
    // Another process switches and drops the old vectors (the last test: the fixture is not restored).
    await activateModel(database.db, other.id);
    await deleteModelEmbeddings(database.db, model.id);
    const after = await search.similarToImage({ kind: 'product', id: productId }, { k: 3 });
    expect(after.model).toBe(other.id);
    expect(after.matches[0]!.product.id).toBe(productId);
  });
});
