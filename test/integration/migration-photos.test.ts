/**
 * Migration 0010 (a product is many photos) on a catalog written by the schema before it (0009): each
 * product's image becomes its photo at position 0 and keeps its vectors, bit for bit, without
 * re-embedding; a vector of an image that is not stored stays (unattached); the analysts' view and
 * similar_products() keep answering; search returns each product once with its matched photo.
 *
 * @backend migration 0010's DDL, triggers and index rebuild on each backend
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { vectorLiteral } from '../../src/db/embeddings.js';
import { createMigrator, migrateToLatest } from '../../src/db/migrate.js';
import { ensureModelIndex, modelIndexName, modelIndexState } from '../../src/models/hnsw.js';
import { nearestNeighbours } from '../../src/search/query.js';
import { createTestDatabase, type TestDatabase } from '../support/test-db.js';
import { embeddingLikeSpace } from '../support/vectors.js';

const model = { id: 'test/migrated-16', dimension: 16 };
const space = embeddingLikeSpace({ dimension: model.dimension, seed: 5 });
const N = 40;

let database: TestDatabase;
/** What the catalog held before the migration: vector text per product. */
const before = new Map<string, string>();
let unstoredId = '';

beforeAll(async () => {
  database = await createTestDatabase();
  const db = database.db;
  const migrator = createMigrator(db);
  const down = await migrator.migrateTo('0009_search_language');
  expect(down.error).toBeUndefined();
  // A catalog as today's main writes it (statements of db/products.ts, db/images.ts and db/embeddings.ts
  // before migration 0010): one image per product keyed by product_id, one vector per (product, model).
  await sql`INSERT INTO embedding_models (id, source, dimension, status, is_active) VALUES (${model.id}, 'test', ${model.dimension}, 'ready', true)`.execute(
    db,
  );
  for (let i = 0; i < N; i++) {
    const sha = (i + 1).toString(16).padStart(64, '0');
    const p = await sql<{ id: string }>`
      INSERT INTO products (sku, title, category, image_url, image_sha256)
      VALUES (${'m-' + i}, ${'migrated ' + i}, ${i % 2 ? 'odd' : 'even'}, ${i % 3 ? null : `https://shop.example/${i}.png`}, ${sha})
      RETURNING id`.execute(db);
    const id = String(p.rows[0]!.id);
    if (i === N - 1) {
      unstoredId = id; // ingested before product_images existed (0002): a vector, no stored image
    } else {
      await sql`INSERT INTO product_images (product_id, sha256, format, width, height, original, thumbnail)
                VALUES (${id}, ${sha}, 'png', 10, 20, ${Buffer.from([i])}, ${Buffer.from([i, i])})`.execute(db);
    }
    await sql`INSERT INTO product_embeddings (product_id, model_id, embedding, image_sha256)
              VALUES (${id}, ${model.id}, ${vectorLiteral(space.vector(i))}::halfvec, ${sha})`.execute(db);
  }
  await ensureModelIndex(db, model);
  const rows = await sql<{ id: string; v: string }>`SELECT product_id AS id, embedding::text AS v FROM product_embeddings`.execute(db);
  for (const r of rows.rows) before.set(String(r.id), r.v);
  // 0010 first, then any later migration
  expect((await migrateToLatest(db))[0]).toBe('0010_product_photos');
}, 120_000);
afterAll(() => database?.close());

it('makes each stored image the product’s photo at position 0, with its URL, and keeps every vector bit for bit', async () => {
  const db = database.db;
  const images = await sql<{ product_id: string; position: number; source_url: string | null; regions: unknown; id: string }>`
    SELECT product_id, position, source_url, regions, id FROM product_images ORDER BY product_id`.execute(db);
  expect(images.rows).toHaveLength(N - 1);
  for (const r of images.rows) {
    expect(r.position).toBe(0);
    expect(r.regions).toEqual([]);
    expect(String(r.id)).toMatch(/^\d+$/);
  }
  expect(images.rows.filter((r) => r.source_url !== null)).toHaveLength(Math.ceil((N - 1) / 3));
  const after = await sql<{ id: string; v: string; image_id: string | null; region: number; pos: number | null }>`
    SELECT e.product_id AS id, e.embedding::text AS v, e.image_id, e.region, pi.position AS pos
    FROM product_embeddings e LEFT JOIN product_images pi ON pi.id = e.image_id`.execute(db);
  expect(after.rows).toHaveLength(N);
  for (const r of after.rows) {
    expect(r.v).toBe(before.get(String(r.id)));
    expect(r.region).toBe(0);
    if (String(r.id) === unstoredId) expect(r.image_id).toBeNull();
    else expect(r.pos).toBe(0);
  }
});

it('keeps the model’s HNSW index (dropped while the vectors were attached, rebuilt from its definition)', async () => {
  expect(await modelIndexState(database.db, model.id)).toBe('valid');
  const def = await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE indexname = ${modelIndexName(model.id)}`.execute(
    database.db,
  );
  expect(def.rows[0]!.indexdef).toMatch(/USING hnsw/);
});

it('keeps product_vectors (one row per product) and similar_products(), and adds product_photo_vectors', async () => {
  const db = database.db;
  const view = await sql<{ n: string }>`SELECT count(*)::text AS n FROM product_vectors`.execute(db);
  expect(Number(view.rows[0]!.n)).toBe(N);
  const photos = await sql<{ n: string }>`SELECT count(*)::text AS n FROM product_photo_vectors WHERE position = 0 AND region = 0`.execute(
    db,
  );
  expect(Number(photos.rows[0]!.n)).toBe(N - 1);
  const firstId = [...before.keys()].sort((a, b) => Number(a) - Number(b))[0]!;
  const similar = await sql<{ id: string; score: number }>`SELECT id, score FROM similar_products(${firstId}::bigint, 5)`.execute(db);
  expect(similar.rows).toHaveLength(5);
  expect(String(similar.rows[0]!.id)).toBe(firstId);
  expect(new Set(similar.rows.map((r) => String(r.id))).size).toBe(5);
  const inCategory = await sql<{ category: string }>`SELECT category FROM similar_products(${firstId}::bigint, 3, 'odd')`.execute(db);
  expect(inCategory.rows.map((r) => r.category)).toEqual(['odd', 'odd', 'odd']);
});

it('answers search with each product once and its matched photo (none for the unstored one)', async () => {
  for (const strategy of ['exact', 'hnsw'] as const) {
    const res = await nearestNeighbours(database.db, { model, vector: vectorLiteral(space.vector(N - 1)), filter: null, k: N, strategy });
    expect(res.neighbours).toHaveLength(N);
    expect(res.neighbours[0]!.productId).toBe(unstoredId);
    expect(res.neighbours[0]!.images[0]!.imageId).toBeNull();
    expect(res.neighbours.slice(1).every((n) => n.images[0]!.image?.position === 0)).toBe(true);
  }
});
