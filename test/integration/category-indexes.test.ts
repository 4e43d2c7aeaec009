/**
 * Per-category HNSW indexes (src/models/category-indexes.ts): which categories get one, that search's
 * own statement is served by it when the filter names its category (the planner matches the predicate
 * with the category as a bound parameter), that its answers are the exact ones, that writes keep it
 * current, and that sync, a reindex's bulk-load drop and a model's drop keep the set right.
 *
 * @backend partial HNSW indexes and the planner choosing them
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { upsertEmbeddings, vectorLiteral } from '../../src/db/embeddings.js';
import {
  categoryIndexName,
  dropCategoryIndexes,
  listCategoryIndexes,
  syncCategoryIndexes,
  wantedCategories,
} from '../../src/models/category-indexes.js';
import { modelIndexName } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { explainSearch, nearestNeighbours, searchNeighbours } from '../../src/search/query.js';
import { createTestDatabase } from '../support/test-db.js';
import { seedVectorCatalog } from '../support/vector-catalog.js';
import { embeddingLikeSpace } from '../support/vectors.js';

const model = { id: 'test/category-index-32', dimension: 32 };
const space = embeddingLikeSpace({ dimension: model.dimension, seed: 11 });
const policy = { minVectors: 300, maxShare: 0.2 };
// 5 000 vectors: 'large' 60 % (above the share), 'mid' 12 % (indexed), 'other' 20 % (indexed, at the
// share's edge), 'small' and 'misc' 4 % each (below the minimum).
const N = 5000;
function categoryOf(i: number): string {
  const r = i % 25;
  if (r < 15) return 'large';
  if (r < 18) return 'mid';
  if (r < 23) return 'other';
  if (r === 23) return 'small';
  return 'misc';
}

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
  await seedVectorCatalog(database.db, {
    n: N,
    skuPrefix: 'ci-',
    category: categoryOf,
    price: (i) => i % 100,
    models: [{ ...model, space }],
  });
}, 300_000);
afterAll(() => database?.close());

it('wants the categories between the minimum and the share, none when the minimum is 0', () => {
  const counts = new Map([
    ['a', 5000],
    ['b', 1200],
    ['c', 299],
    ['d', 300],
  ]);
  expect(wantedCategories(counts, 10_000, policy)).toEqual(['b', 'd']);
  expect(wantedCategories(counts, 10_000, { minVectors: 0, maxShare: 1 })).toEqual([]);
  // Names are per model and category, valid identifiers whatever the category's text.
  expect(categoryIndexName(model.id, "it's / é")).toMatch(/^product_embeddings_hnsw_category_[0-9a-f]{16}$/);
  expect(categoryIndexName(model.id, 'mid')).not.toBe(categoryIndexName('other/model', 'mid'));
});

describe('on the database', () => {
  it('sync builds the indexes of the categories in range, records which one each serves, and keeps them on the next sync', async () => {
    const first = await syncCategoryIndexes(database.db, model, database.kind, policy);
    expect(first).toEqual({ built: ['mid', 'other'], dropped: [], kept: [] });
    const listed = await listCategoryIndexes(database.db, model.id);
    expect(listed.map((i) => [i.category, i.name, i.valid]).sort()).toEqual([
      ['mid', categoryIndexName(model.id, 'mid'), true],
      ['other', categoryIndexName(model.id, 'other'), true],
    ]);
    expect(await syncCategoryIndexes(database.db, model, database.kind, policy)).toEqual({
      built: [],
      dropped: [],
      kept: ['mid', 'other'],
    });
  });

  it("serves search's one statement for a filter on its category (with other filters too), the model's index otherwise", async () => {
    await sql`ANALYZE product_embeddings`.execute(database.db);
    const vector = vectorLiteral(space.query(1));
    const q = (filter: Record<string, unknown> | null) => ({ model, vector, filter, k: 10 });
    expect(await explainSearch(database.db, q({ category: 'mid' }), 'hnsw')).toContain(categoryIndexName(model.id, 'mid'));
    expect(await explainSearch(database.db, q({ category: 'mid', maxPrice: 50 }), 'hnsw')).toContain(categoryIndexName(model.id, 'mid'));
    const unfiltered = await explainSearch(database.db, q(null), 'hnsw');
    expect(unfiltered).toContain(modelIndexName(model.id));
    expect(unfiltered).not.toContain('product_embeddings_hnsw_category_');
    expect(await explainSearch(database.db, q({ category: 'large' }), 'hnsw')).not.toContain('product_embeddings_hnsw_category_');
  });

  it('answers like the exact scan through the category index: k results, recall ≥ 0.95', async () => {
    let found = 0;
    let wanted = 0;
    for (let j = 0; j < 10; j++) {
      const vector = vectorLiteral(space.query(100 + j));
      const filter = { category: 'mid' };
      const exact = await nearestNeighbours(database.db, { model, vector, filter, k: 10, strategy: 'exact' });
      const walked = await searchNeighbours(database.db, { model, vector, filter, k: 10, strategy: 'hnsw' }, null);
      expect(walked.neighbours).toHaveLength(10);
      expect(walked.fellBack).toBe(false);
      expect(walked.neighbours.every((n) => n.product.category === 'mid')).toBe(true);
      const truth = new Set(exact.neighbours.map((n) => n.productId));
      found += walked.neighbours.filter((n) => truth.has(n.product.id)).length;
      wanted += truth.size;
    }
    expect(found / wanted).toBeGreaterThanOrEqual(0.95);
  });

  it('is kept current by writes: a product moved into the category is found through its index at once', async () => {
    const db = database.db;
    // The nearest 'large' product to a query; moved to 'mid', the walk over mid's index must return it first.
    const vector = vectorLiteral(space.query(7));
    const nearestLarge = await nearestNeighbours(db, { model, vector, filter: { category: 'large' }, k: 1, strategy: 'exact' });
    const moved = nearestLarge.neighbours[0]!.productId;
    await sql`UPDATE products SET category = 'mid' WHERE id = ${moved}`.execute(db);
    try {
      const before = await nearestNeighbours(db, { model, vector, filter: { category: 'mid' }, k: 10, strategy: 'exact' });
      const walked = await searchNeighbours(db, { model, vector, filter: { category: 'mid' }, k: 10, strategy: 'hnsw' }, null);
      expect(before.neighbours.map((n) => n.productId)).toContain(moved);
      expect(walked.neighbours.map((n) => n.product.id)).toContain(moved);
    } finally {
      await sql`UPDATE products SET category = 'large' WHERE id = ${moved}`.execute(db);
    }
  });

  it('sync drops the index of a category that left the range, and rebuilds one dropped by hand', async () => {
    const db = database.db;
    await sql`DROP INDEX ${sql.id(categoryIndexName(model.id, 'other'))}`.execute(db);
    // 'mid' shrinks below the minimum: 400 of its 600 products move to 'small', which grows into the range.
    await sql`
      UPDATE products SET category = 'small'
      WHERE id IN (SELECT id FROM products WHERE category = 'mid' ORDER BY id LIMIT 400)`.execute(db);
    const r = await syncCategoryIndexes(db, model, database.kind, policy);
    expect(r).toEqual({ built: ['other', 'small'], dropped: ['mid'], kept: [] });
    expect((await listCategoryIndexes(db, model.id)).map((i) => i.category).sort()).toEqual(['other', 'small']);
  });

  it("a reindex's bulk-load drop and a model's drop remove them; other models' stay", async () => {
    const db = database.db;
    const other = { id: 'test/category-index-other', dimension: 32 };
    await registerModel(db, { ...other, source: 'test', variant: null });
    const ids = await sql<{ id: string }>`SELECT id FROM products WHERE category = 'other' ORDER BY id LIMIT 400`.execute(db);
    await upsertEmbeddings(
      db,
      ids.rows.map((r, j) => ({ productId: String(r.id), modelId: other.id, embedding: space.vector(j), imageSha256: 'd'.repeat(64) })),
    );
    // 400 of the other model's 400 vectors: share 100 %, so allow every share for this one.
    expect((await syncCategoryIndexes(db, other, database.kind, { minVectors: 300, maxShare: 1 })).built).toEqual(['other']);
    await dropCategoryIndexes(db, model.id);
    expect(await listCategoryIndexes(db, model.id)).toEqual([]);
    expect((await listCategoryIndexes(db)).map((i) => [i.modelId, i.category])).toEqual([[other.id, 'other']]);
    await dropCategoryIndexes(db, other.id);
    expect(await listCategoryIndexes(db)).toEqual([]);
  });
});
