/** product_embeddings: one vector per (product, model), stored as halfvec. */
import pgvector from 'pgvector';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { DB } from './types.js';

type Db = Kysely<DB> | Transaction<DB>;

export interface EmbeddingWrite {
  productId: string;
  modelId: string;
  embedding: Float32Array;
  imageSha256: string;
}

export function vectorLiteral(v: Float32Array | number[]): string {
  return pgvector.toSql(Array.from(v));
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
        embedding: sql`${vectorLiteral(r.embedding)}::halfvec` as never,
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

export async function deleteEmbeddings(db: Db, productIds: string[]): Promise<void> {
  if (productIds.length === 0) return;
  await db.deleteFrom('product_embeddings').where('product_id', 'in', productIds).execute();
}
