/**
 * product_embeddings: one vector per (photo, model, region), stored as halfvec (migration 0010); and which
 * photos still need theirs (the keyset walk a reindex makes over product_images).
 */
import pgvector from 'pgvector';
import { sql } from 'kysely';
import type { Db, RegionBox } from './types.js';

export interface EmbeddingWrite {
  productId: string;
  modelId: string;
  embedding: Float32Array;
  imageSha256: string;
  /** The photo embedded (product_images.id); absent: a vector of the product not tied to a stored photo. */
  imageId?: string;
  /** 0 (default): the whole photo; n: its n-th region's crop. */
  region?: number;
}

export function vectorLiteral(v: Float32Array | number[]): string {
  return String(pgvector.toSql(Array.from(v)));
}

/**
 * Multi-row upsert. A photo's vector for a model (and region) is replaced when written again; a vector
 * without a photo is the product's one unattached vector for the model (benchmarks and tests that have
 * no image bytes write those). The first photo vector written for a product replaces its unattached one.
 */
export async function upsertEmbeddings(db: Db, rows: EmbeddingWrite[]): Promise<void> {
  if (rows.length === 0) return;
  const values = (list: EmbeddingWrite[]) =>
    list.map((r) => ({
      product_id: r.productId,
      model_id: r.modelId,
      image_id: r.imageId ?? null,
      region: r.region ?? 0,
      embedding: sql<string>`${vectorLiteral(r.embedding)}::halfvec`,
      image_sha256: r.imageSha256,
    }));
  const attached = rows.filter((r) => r.imageId != null);
  const unattached = rows.filter((r) => r.imageId == null);
  if (attached.length) {
    await dropUnattached(
      db,
      attached.map((r) => ({ productId: r.productId, modelId: r.modelId })),
    );
    await db
      .insertInto('product_embeddings')
      .values(values(attached))
      .onConflict((oc) =>
        oc.columns(['image_id', 'model_id', 'region']).doUpdateSet((eb) => ({
          embedding: eb.ref('excluded.embedding'),
          image_sha256: eb.ref('excluded.image_sha256'),
          created_at: sql`now()`,
        })),
      )
      .execute();
  }
  if (unattached.length) {
    await db
      .insertInto('product_embeddings')
      .values(values(unattached))
      .onConflict((oc) =>
        oc
          .columns(['product_id', 'model_id'])
          .where('image_id', 'is', null)
          .doUpdateSet((eb) => ({
            embedding: eb.ref('excluded.embedding'),
            image_sha256: eb.ref('excluded.image_sha256'),
            created_at: sql`now()`,
          })),
      )
      .execute();
  }
}

/** A product's unattached vector (of an image no longer stored) gives way to its photos' vectors. */
async function dropUnattached(db: Db, pairs: Array<{ productId: string; modelId: string }>): Promise<void> {
  await sql`
    DELETE FROM product_embeddings e
    USING unnest(${pairs.map((p) => p.productId)}::bigint[], ${pairs.map((p) => p.modelId)}::text[]) AS v(product_id, model_id)
    WHERE e.product_id = v.product_id AND e.model_id = v.model_id AND e.image_id IS NULL`.execute(db);
}

/** Which of these photos the model has embedded (their vectors are written together: the whole photo's says). */
export async function embeddedImages(db: Db, modelId: string, imageIds: readonly string[]): Promise<Set<string>> {
  if (imageIds.length === 0) return new Set();
  const rows = await db
    .selectFrom('product_embeddings')
    .select('image_id')
    .where('model_id', '=', modelId)
    .where('region', '=', 0)
    .where('image_id', 'in', [...imageIds])
    .execute();
  return new Set(rows.map((r) => String(r.image_id)));
}

/**
 * A product's stored vector for a model, as the text form '[…]' (null if none): its first photo's (the
 * whole photo), the vector a productId query searches with.
 */
export async function storedVector(db: Db, modelId: string, productId: string): Promise<string | null> {
  const row = await sql<{ v: string }>`
    SELECT e.embedding::vector::text AS v
    FROM product_embeddings e LEFT JOIN product_images pi ON pi.id = e.image_id
    WHERE e.model_id = ${modelId} AND e.product_id = ${productId} AND e.region = 0
    ORDER BY pi.position NULLS LAST
    LIMIT 1`.execute(db);
  return row.rows[0]?.v ?? null;
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

/** A vector a reindex computed: of a photo (region 0) or of one of its regions. */
export interface ComputedVector {
  productId: string;
  imageId: string;
  region: number;
  sha256: string;
  embedding: Float32Array;
}

/**
 * A reindex batch's vectors, multi-row via unnest. A vector is written only if its photo is still stored
 * (a concurrent upsert that replaced the photo wrote its own vectors already, or the sweep picks it up).
 */
export async function insertComputedVectors(db: Db, modelId: string, vectors: ComputedVector[]): Promise<void> {
  if (vectors.length === 0) return;
  await dropUnattached(
    db,
    vectors.map((v) => ({ productId: v.productId, modelId })),
  );
  await sql`
    INSERT INTO product_embeddings (product_id, image_id, region, model_id, embedding, image_sha256)
    SELECT pi.product_id, v.image_id, v.region, ${modelId}, v.embedding::halfvec, v.sha256
    FROM unnest(${vectors.map((v) => v.imageId)}::bigint[], ${vectors.map((v) => v.region)}::smallint[], ${vectors.map((v) => v.sha256)}::text[],
                ${vectors.map((v) => vectorLiteral(v.embedding))}::text[])
      AS v(image_id, region, sha256, embedding)
    JOIN product_images pi ON pi.id = v.image_id AND pi.sha256 = v.sha256
    ON CONFLICT (image_id, model_id, region) DO UPDATE
      SET embedding = excluded.embedding, image_sha256 = excluded.image_sha256, created_at = now()`.execute(db);
}

/** One stored photo to embed: whole, and each of its regions. */
export interface CatalogImage {
  imageId: string;
  productId: string;
  sku: string;
  sha256: string;
  regions: RegionBox[];
  original: Buffer;
}

/** Photos the model has not embedded (their vectors are written together: the whole photo's says). */
const missingVector = (modelId: string) =>
  sql<boolean>`NOT EXISTS (SELECT 1 FROM product_embeddings e WHERE e.image_id = pi.id AND e.model_id = ${modelId} AND e.region = 0)`;

/** The next keyset batch of stored photos after the photo id `afterId`, in id order. */
export async function nextCatalogBatch(
  db: Db,
  o: { modelId: string; afterId: string; limit: number; onlyMissing: boolean },
): Promise<CatalogImage[]> {
  const rows = await sql<{ id: string; product_id: string; sku: string; sha256: string; regions: RegionBox[]; original: Buffer }>`
    SELECT pi.id, pi.product_id, p.sku, pi.sha256, pi.regions, pi.original
    FROM product_images pi JOIN products p ON p.id = pi.product_id
    WHERE pi.id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}
    ORDER BY pi.id
    LIMIT ${o.limit}`.execute(db);
  return rows.rows.map((r) => ({
    imageId: String(r.id),
    productId: String(r.product_id),
    sku: r.sku,
    sha256: r.sha256,
    regions: r.regions,
    original: Buffer.from(r.original),
  }));
}

/** Photos left after the cursor (a photo id): all, or (onlyMissing) those the model has not embedded. */
export async function countLeft(db: Db, o: { modelId: string; afterId: string; onlyMissing: boolean }): Promise<number> {
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM product_images pi
    WHERE pi.id > ${o.afterId}::bigint ${o.onlyMissing ? sql`AND ${missingVector(o.modelId)}` : sql``}`.execute(db);
  return Number(r.rows[0]!.n);
}

/** How far a model covers the catalog: products, photos and the vectors it has (whole photos and regions). */
export interface ModelCoverage {
  /** Products with at least one stored photo. */
  products: number;
  /** Of those, products whose every photo the model has embedded. */
  productsEmbedded: number;
  /** Stored photos. */
  photos: number;
  /** Photos the model has embedded (each with its regions). */
  photosEmbedded: number;
  /** The model's vectors: one per photo and one per region of it. */
  vectors: number;
}

/** A model's coverage of the catalog, counted now in one statement (for a reindex job's progress). */
export async function modelCoverage(db: Db, modelId: string): Promise<ModelCoverage> {
  const r = await sql<{ products: string; products_missing: string; photos: string; photos_missing: string; vectors: string }>`
    SELECT (SELECT count(DISTINCT product_id) FROM product_images) AS products,
           (SELECT count(DISTINCT pi.product_id) FROM product_images pi WHERE ${missingVector(modelId)}) AS products_missing,
           (SELECT count(*) FROM product_images) AS photos,
           (SELECT count(*) FROM product_images pi WHERE ${missingVector(modelId)}) AS photos_missing,
           (SELECT count(*) FROM product_embeddings WHERE model_id = ${modelId}) AS vectors`.execute(db);
  const row = r.rows[0]!;
  const products = Number(row.products);
  const photos = Number(row.photos);
  return {
    products,
    productsEmbedded: products - Number(row.products_missing),
    photos,
    photosEmbedded: photos - Number(row.photos_missing),
    vectors: Number(row.vectors),
  };
}

/** Products with a stored photo the model has not embedded. */
export async function countMissing(db: Db, modelId: string): Promise<number> {
  const r = await sql<{
    n: string;
  }>`SELECT count(DISTINCT pi.product_id) AS n FROM product_images pi WHERE ${missingVector(modelId)}`.execute(db);
  return Number(r.rows[0]!.n);
}
