/**
 * A product is many photos (issue 22), searched as one product, still exactly k: a catalog of products
 * with 8 photos each (one vector per photo), filtered from 100 % down to 0.1 %, and a product with 12
 * near-identical photos. Both strategies (the exact scan and the HNSW walk that walks deeper until the
 * vectors it read hold k products) must return k distinct products, ranked by their best photo.
 *
 * @backend the grouped search statement (iterative walks, exact path) on each backend's pgvector build
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { vectorLiteral } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { nearestNeighbours, searchNeighbours } from '../../src/search/query.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { createTestDatabase } from '../support/test-db.js';
import { embeddingLikeSpace, seededRandom } from '../support/vectors.js';

// 5 000 products × 8 photos: 40 000 vectors, whose HNSW build is most of this file's time on PGlite.
const PRODUCTS = 5_000;
const PHOTOS = 8;
const model = { id: 'test/photos-24', dimension: 24 };
const space = embeddingLikeSpace({ dimension: model.dimension, seed: 11 });

function categoryOf(i: number): string {
  if (i % 1000 === 5) return 'c0.1'; // 5 products, 40 vectors
  if (i % 100 === 3) return 'c1';
  if (i % 10 === 1) return 'c10';
  return 'common';
}

/** A product's photos: views of one look (its base vector plus noise), as a product page's photos are. */
function photoVector(product: number, photo: number): Float32Array {
  const base = space.vector(product);
  const r = seededRandom(97 * product + photo + 1);
  const v = base.map((x) => x + 0.08 * r.normal());
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

let database: Database;
/** The product with 12 near-identical photos, and the vector its photos are near. */
let twelveId = '';
const twelveLook = space.query(4242);

async function addPhotos(
  productIds: string[],
  photosOf: (j: number) => Float32Array[],
  variants?: (j: number, p: number) => string | null,
) {
  const db = database.db;
  const rows = productIds.flatMap((id, j) => photosOf(j).map((v, p) => ({ id, p, v, variant: variants?.(j, p) ?? null })));
  const images = await sql<{ id: string }>`
    INSERT INTO product_images (product_id, position, variant, sha256, format, width, height, original, thumbnail)
    SELECT r.product_id, r.position, r.variant, repeat('a', 64), 'png', 1, 1, '\\x00'::bytea, '\\x00'::bytea
    FROM unnest(${rows.map((r) => r.id)}::bigint[], ${rows.map((r) => r.p)}::int[], ${rows.map((r) => r.variant)}::text[])
      WITH ORDINALITY AS r(product_id, position, variant, n)
    ORDER BY r.n
    RETURNING id`.execute(db);
  // One statement per batch (the bulk path a load takes; ingest's own write path is tested elsewhere).
  await sql`
    INSERT INTO product_embeddings (product_id, image_id, model_id, embedding, image_sha256)
    SELECT v.product_id, v.image_id, ${model.id}, v.e::halfvec, ${'a'.repeat(64)}
    FROM unnest(${rows.map((r) => r.id)}::bigint[], ${images.rows.map((r) => r.id)}::bigint[], ${rows.map((r) => vectorLiteral(r.v))}::text[])
      AS v(product_id, image_id, e)`.execute(db);
}

beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  await registerModel(db, { ...model, source: 'test', variant: null });
  await activateModel(db, model.id);
  const batch = 1000;
  for (let start = 0; start < PRODUCTS; start += batch) {
    const rows = Array.from({ length: Math.min(batch, PRODUCTS - start) }, (_, j) => start + j);
    const inserted = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category, price, in_stock)
      SELECT 'ph-' || i, 'photo product ' || i, c, (i % 200)::numeric, true
      FROM unnest(${rows}::int[], ${rows.map(categoryOf)}::text[]) WITH ORDINALITY AS t(i, c, n)
      ORDER BY t.n
      RETURNING id`.execute(db);
    await addPhotos(
      inserted.rows.map((r) => String(r.id)),
      (j) => Array.from({ length: PHOTOS }, (_, p) => photoVector(rows[j]!, p)),
      (j, p) => (rows[j]! % 7 === 0 && p === PHOTOS - 1 ? 'red' : null),
    );
  }
  // 12 near-identical photos of one product, right where the query below looks.
  const twelve = await sql<{ id: string }>`
    INSERT INTO products (sku, title, category) VALUES ('twelve', 'twelve photos', 'common') RETURNING id`.execute(db);
  twelveId = String(twelve.rows[0]!.id);
  await addPhotos([twelveId], () =>
    Array.from({ length: 12 }, (_, p) => {
      const r = seededRandom(5000 + p);
      const v = twelveLook.map((x) => x + 0.01 * r.normal());
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    }),
  );
  await ensureModelIndex(db, model);
  await sql`ANALYZE products`.execute(db);
  await sql`ANALYZE product_embeddings`.execute(db);
}, 900_000);
afterAll(() => database?.close());

/** The exact answer written another way: every vector's distance, the minimum per product. */
async function truth(vector: string, category: string | null, k: number): Promise<Array<{ id: string; distance: number }>> {
  const r = await sql<{ id: string; distance: number }>`
    SELECT e.product_id AS id, min((e.embedding <=> ${vector}::halfvec)::float8) AS distance
    FROM product_embeddings e
    WHERE e.model_id = ${model.id} AND (${category}::text IS NULL OR e.category = ${category})
    GROUP BY e.product_id ORDER BY 2, 1 LIMIT ${k}`.execute(database.db);
  return r.rows.map((x) => ({ id: String(x.id), distance: Number(x.distance) }));
}

describe.each([
  { label: '100 %', category: null, products: PRODUCTS + 1 },
  { label: '10 %', category: 'c10', products: PRODUCTS / 10 },
  { label: '1 %', category: 'c1', products: PRODUCTS / 100 },
  { label: '0.1 %', category: 'c0.1', products: PRODUCTS / 1000 },
])('selectivity $label, 8 photos per product', ({ category, products }) => {
  it('returns exactly k distinct products on both strategies, ranked by their best photo (exact: the true answer; walk: recall ≥ 0.9)', async () => {
    // k 10, or at 0.1 % every product of the category (5): exactly k either way.
    const k = Math.min(10, products);
    let found = 0;
    let wanted = 0;
    for (let j = 0; j < 6; j++) {
      const vector = vectorLiteral(space.query(j));
      const filter = category ? { category } : null;
      const expected = await truth(vector, category, k);
      for (const strategy of ['exact', 'hnsw'] as const) {
        const res = await nearestNeighbours(database.db, { model, vector, filter, k, strategy, vectorsPerProduct: PHOTOS });
        const ids = res.neighbours.map((n) => n.productId);
        expect(ids).toHaveLength(k);
        expect(new Set(ids).size).toBe(k);
        // The product's distance is its best photo's, and that photo is named.
        for (const n of res.neighbours) {
          expect(n.images).toHaveLength(1);
          expect(n.images[0]!.distance).toBeCloseTo(n.distance, 6);
          expect(n.images[0]!.imageId).toMatch(/^\d+$/);
        }
        if (strategy === 'exact') expect(ids).toEqual(expected.map((e) => e.id));
        else {
          const want = new Set(expected.map((e) => e.id));
          found += ids.filter((id) => want.has(id)).length;
          wanted += k;
        }
      }
      // The service's hot path (one statement per walk) agrees on the count and distinctness.
      const hot = await searchNeighbours(database.db, { model, vector, filter, k, vectorsPerProduct: PHOTOS }, null);
      expect(new Set(hot.neighbours.map((n) => n.product.id)).size).toBe(k);
    }
    expect(found / wanted).toBeGreaterThanOrEqual(0.9);
  });
});

describe('a product with 12 near-identical photos', () => {
  it('takes one slot, on both strategies and whatever the first walk is sized for', async () => {
    const vector = vectorLiteral(twelveLook);
    for (const strategy of ['exact', 'hnsw'] as const) {
      for (const vectorsPerProduct of [1, PHOTOS]) {
        const res = await nearestNeighbours(database.db, { model, vector, filter: null, k: 10, strategy, vectorsPerProduct });
        const ids = res.neighbours.map((n) => n.productId);
        expect(ids[0]).toBe(twelveId);
        expect(ids).toHaveLength(10);
        expect(new Set(ids).size).toBe(10);
        // With a first walk of 10 vectors the twelve photos fill it: the walk went deeper.
        if (strategy === 'hnsw' && vectorsPerProduct === 1) expect(res.walks).toBeGreaterThan(1);
      }
    }
    const hot = await searchNeighbours(database.db, { model, vector, filter: null, k: 10 }, null);
    expect(hot.neighbours.map((n) => n.product.id).filter((id) => id === twelveId)).toHaveLength(1);
    expect(new Set(hot.neighbours.map((n) => n.product.id)).size).toBe(10);
  });

  it("on the hot path's exact statement: groups the nearest vectors first, and every vector when those hold fewer than k products", async () => {
    const vector = vectorLiteral(twelveLook);
    // Sized for one photo per product (k 2: the 2 nearest vectors ungrouped, then the 8 nearest grouped):
    // the twelve photos fill both, so the statement is repeated over every vector, and the answer is
    // still 2 distinct products.
    const short = await searchNeighbours(database.db, { model, vector, filter: null, k: 2, strategy: 'exact', vectorsPerProduct: 1 }, null);
    expect(short.neighbours.map((n) => n.product.id)[0]).toBe(twelveId);
    expect(new Set(short.neighbours.map((n) => n.product.id)).size).toBe(2);
    expect(short.roundTrips).toBe(3);
    // Sized for 8 photos per product (k 10 → the 320 nearest vectors): one statement, the exact answer.
    const once = await searchNeighbours(
      database.db,
      { model, vector, filter: null, k: 10, strategy: 'exact', vectorsPerProduct: PHOTOS },
      null,
    );
    expect(once.roundTrips).toBe(1);
    const exact = await nearestNeighbours(database.db, { model, vector, filter: null, k: 10, strategy: 'exact' });
    expect(once.neighbours.map((n) => n.product.id)).toEqual(exact.neighbours.map((n) => n.productId));
    expect(short.neighbours.map((n) => n.product.id)).toEqual(exact.neighbours.slice(0, 2).map((n) => n.productId));
  });

  it('sized for one photo per product, the lean first statement (k vectors, ungrouped) gives way to the grouped one when its vectors share a product', async () => {
    const vector = vectorLiteral(twelveLook);
    for (const strategy of ['exact', 'hnsw'] as const) {
      // k 1: one vector is one product, so the lean statement answers alone.
      const one = await searchNeighbours(database.db, { model, vector, filter: null, k: 1, strategy, vectorsPerProduct: 1 }, null);
      expect(one.roundTrips).toBe(1);
      expect(one.neighbours.map((n) => n.product.id)).toEqual([twelveId]);
      // k 10: the 10 nearest vectors are the twelve's photos, one product; the grouped statement (40
      // vectors, the twelve's and others') answers with 10 distinct products, the twelve first.
      const shared = await searchNeighbours(database.db, { model, vector, filter: null, k: 10, strategy, vectorsPerProduct: 1 }, null);
      expect(shared.roundTrips).toBe(2);
      const ids = shared.neighbours.map((n) => n.product.id);
      expect(ids[0]).toBe(twelveId);
      expect(new Set(ids).size).toBe(10);
      if (strategy === 'exact') {
        const exact = await nearestNeighbours(database.db, { model, vector, filter: null, k: 10, strategy: 'exact' });
        expect(ids).toEqual(exact.neighbours.map((n) => n.productId));
      }
    }
  });

  it('reads no photo row without matchedPhotos, and ranks the same: the best photo by id and region only', async () => {
    const vector = vectorLiteral(twelveLook);
    for (const strategy of ['exact', 'hnsw'] as const) {
      const q = { model, vector, filter: null, k: 10, strategy, vectorsPerProduct: PHOTOS };
      const withPhotos = await searchNeighbours(database.db, q, null);
      const without = await searchNeighbours(database.db, { ...q, matchedPhotos: false }, null);
      const hits = (r: typeof withPhotos) =>
        r.neighbours.map((n) => ({ id: n.product.id, distance: n.distance, image: n.images[0]!.imageId, region: n.images[0]!.region }));
      expect(hits(without)).toEqual(hits(withPhotos));
      expect(withPhotos.neighbours.every((n) => n.images[0]!.image?.id === n.images[0]!.imageId)).toBe(true);
      expect(without.neighbours.every((n) => n.images[0]!.imageId !== null && n.images[0]!.image === null)).toBe(true);
    }
  });

  it('lists its n best photos with imagesPerProduct, each photo once, best first', async () => {
    const vector = vectorLiteral(twelveLook);
    for (const strategy of ['exact', 'hnsw'] as const) {
      const res = await nearestNeighbours(database.db, { model, vector, filter: null, k: 5, strategy, imagesPerProduct: 4 });
      const top = res.neighbours[0]!;
      expect(top.productId).toBe(twelveId);
      expect(top.images).toHaveLength(4);
      expect(new Set(top.images.map((h) => h.imageId)).size).toBe(4);
      for (let i = 1; i < 4; i++) expect(top.images[i]!.distance).toBeGreaterThanOrEqual(top.images[i - 1]!.distance);
      expect(top.images[0]!.distance).toBeCloseTo(top.distance, 6);
    }
  });
});

describe('the variant filter', () => {
  it("matches only that variant's photos", async () => {
    const vector = vectorLiteral(space.query(3));
    for (const strategy of ['exact', 'hnsw'] as const) {
      const res = await nearestNeighbours(database.db, { model, vector, filter: { variant: 'red' }, k: 10, strategy });
      expect(res.neighbours).toHaveLength(10);
      const imageIds = res.neighbours.map((n) => n.images[0]!.imageId!);
      const variants = await sql<{ variant: string | null; position: number }>`
        SELECT variant, position FROM product_images WHERE id IN (${sql.join(imageIds)})`.execute(database.db);
      expect(variants.rows.every((r) => r.variant === 'red' && r.position === PHOTOS - 1)).toBe(true);
    }
  });
});

describe('the estimator', () => {
  it('knows the vectors per product of the model (what sizes the first walk)', async () => {
    const estimator = new SelectivityEstimator(database.db);
    await estimator.estimate(model.id, null);
    expect(estimator.vectorsPerProduct(model.id)).toBeGreaterThan(PHOTOS * 0.8);
    expect(estimator.vectorsPerProduct(model.id)).toBeLessThan(PHOTOS * 1.2);
  });
});
