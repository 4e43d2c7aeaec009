/**
 * product_embeddings: one vector per (product, model), stored as halfvec; and which products still need
 * one (the keyset walk a reindex makes over product_images).
 */
import pgvector from 'pgvector';
import { sql } from 'kysely';
import type { Db } from './types.js';

export interface EmbeddingWrite {
  productId: string;
  modelId: string;
  embedding: Float32Array;
  imageSha256: string;
}

export function vectorLiteral(v: Float32Array | number[]): string {
  return String(pgvector.toSql(Array.from(v)));
}

/** Multi-row upsert: a product's vector for a model is replaced when its image changed. */
export async function upsertEmbeddings(db: Db, rows: EmbeddingWrite[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('product_embeddings')
    .values(
      rows.map((r) => ({
        product_id: r.productId,
        model_id: r.modelId,
        embedding: sql<string>`${vectorLiteral(r.embedding)}::halfvec`,
        image_sha256: r.imageSha256,
      })),
    )
    .onConflict((oc) =>
      oc.columns(['product_id', 'model_id']).doUpdateSet((eb) => ({
        embedding: eb.ref('excluded.embedding'),
        image_sha256: eb.ref('excluded.image_sha256'),
        created_at: sql`now()`,
      })),
    )
    .execute();
}

/** The image hash each product's stored vector was computed from, for one model. */
export async function embeddedImageHashes(db: Db, modelId: string, productIds: string[]): Promise<Map<string, string>> {
  if (productIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('product_embeddings')
    .select(['product_id', 'image_sha256'])
    .where('model_id', '=', modelId)
    .where('product_id', 'in', productIds)
    .execute();
  return new Map(rows.map((r) => [String(r.product_id), r.image_sha256]));
}

/** A product's stored vector for a model, as the text form '[…]' (null if none). */
export async function storedVector(db: Db, modelId: string, productId: string): Promise<string | null> {
  const row = await db
    .selectFrom('product_embeddings')
    .select(sql<string>`embedding::vector::text`.as('v'))
    .where('model_id', '=', modelId)
    .where('product_id', '=', productId)
    .executeTakeFirst();
  return row?.v ?? null;
}

/** Vectors stored per model. */
export async function countModelVectors(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom('product_embeddings')
    .select(['model_id', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('model_id')
    .execute();
  return new Map(rows.map((r) => [r.model_id, Number(r.n)]));
}

/** Deletes every vector of a model (its index is models/hnsw.ts's). Returns how many. */
export async function deleteModelEmbeddings(db: Db, modelId: string): Promise<number> {
  const r = await db.deleteFrom('product_embeddings').where('model_id', '=', modelId).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/**
 * A reindex batch's vectors, multi-row via unnest. A vector is written only if the product still has the
 * image it was computed from (a concurrent upsert that changed the image wrote its own vector already,
 * or the final sweep picks the product up).
 */
export async function insertComputedVectors(
  db: Db,
  modelId: string,
  vectors: Array<{ productId: string; sha256: string; embedding: Float32Array }>,
): Promise<void> {
  if (vectors.length === 0) return;
  await sql`
    INSERT INTO product_embeddings (product_id, model_id, embedding, image_sha256)
    SELECT v.product_id, ${modelId}, v.embedding::halfvec, v.sha256
    FROM unnest(${vectors.map((v) => v.productId)}::bigint[], ${vectors.map((v) => v.sha256)}::text[], ${vectors.map((v) => vectorLiteral(v.embedding))}::text[])
      AS v(product_id, sha256, embedding)
    JOIN product_images pi ON pi.product_id = v.product_id AND pi.sha256 = v.sha256
    ON CONFLICT (product_id, model_id) DO UPDATE
      SET embedding = excluded.embedding, image_sha256 = excluded.image_sha256, created_at = now()`.execute(db);
}

export interface CatalogImage {
  productId: string;
  sku: string;
  sha256: string;
  original: Buffer;
}

/** Products whose current image is not embedded by the model (NOT EXISTS over the (product, model) key). */
const missingVector = (modelId: string) =>
  sql<boolean>`NOT EXISTS (SELECT 1 FROM product_embeddings e WHERE e.product_id = pi.product_id AND e.model_id = ${modelId} AND e.image_sha256 = pi.sha256)`;

/** The next keyset batch of product images after `afterId`, in id order. */
export async function nextCatalogBatch(
  db: Db,
  o: { modelId: string; afterId: string; limit: number; onlyMissing: boolean },
): Promise<CatalogImage[]> {
  const rows = await sql<{ product_id: string; sku: string; sha256: string; original: Buffer }>`
    SELECT pi.product_id, p.sku, pi.sha256, pi.original
    FROM product_images pi JOIN products p ON p.id = pi.product_id
    WHERE pi.product_id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}
    ORDER BY pi.product_id
    LIMIT ${o.limit}`.execute(db);
  return rows.rows.map((r) => ({ productId: String(r.product_id), sku: r.sku, sha256: r.sha256, original: Buffer.from(r.original) }));
}

/** Products left after the cursor: with an image, and (onlyMissing) without a current vector of the model. */
export async function countLeft(db: Db, o: { modelId: string; afterId: string; onlyMissing: boolean }): Promise<number> {
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM product_images pi
    WHERE pi.product_id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}`.execute(db);
  return Number(r.rows[0]!.n);
}

/** Products with an image but no vector of that image for the model. */
export async function countMissing(db: Db, modelId: string): Promise<number> {
  const r = await sql<{ n: string }>`SELECT count(*) AS n FROM product_images pi WHERE ${missingVector(modelId)}`.execute(db);
  return Number(r.rows[0]!.n);
}
