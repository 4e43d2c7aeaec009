/** The embedding model registry (embedding_models) and each model's HNSW index. */
import { createHash } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { DB, EmbeddingModelsTable } from './types.js';

type Db = Kysely<DB> | Transaction<DB>;

export interface EmbeddingModel {
  id: string;
  source: string;
  variant: string | null;
  dimension: number;
  status: 'building' | 'ready' | 'retired';
  isActive: boolean;
  createdAt: Date;
  activatedAt: Date | null;
}

/** Model ids as the registry accepts them (migration 0005): hub-style names, optionally @variant. */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._/@-]{0,127}$/;

function toModel(r: Selectable<EmbeddingModelsTable>): EmbeddingModel {
  return {
    id: r.id,
    source: r.source,
    variant: r.variant,
    dimension: r.dimension,
    status: r.status,
    isActive: r.is_active,
    createdAt: new Date(r.created_at),
    activatedAt: r.activated_at ? new Date(r.activated_at) : null,
  };
}

export async function listModels(db: Db): Promise<EmbeddingModel[]> {
  return (await db.selectFrom('embedding_models').selectAll().orderBy('created_at').execute()).map(toModel);
}

export async function getModel(db: Db, id: string): Promise<EmbeddingModel | null> {
  const r = await db.selectFrom('embedding_models').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toModel(r) : null;
}

export async function getActiveModel(db: Db): Promise<EmbeddingModel | null> {
  const r = await db.selectFrom('embedding_models').selectAll().where('is_active', '=', true).executeTakeFirst();
  return r ? toModel(r) : null;
}

/** Registers a model (idempotent). A known id with another dimension is a conflict, not an update. */
export async function registerModel(
  db: Db,
  m: { id: string; source: string; variant: string | null; dimension: number },
): Promise<EmbeddingModel> {
  if (!MODEL_ID.test(m.id)) throw new AppError(ErrorCode.BAD_USER_INPUT, `"${m.id}" is not a valid model id`);
  await db
    .insertInto('embedding_models')
    .values({ id: m.id, source: m.source, variant: m.variant, dimension: m.dimension })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  const stored = (await getModel(db, m.id))!;
  if (stored.dimension !== m.dimension) {
    throw new AppError(
      ErrorCode.CONFLICT,
      `Model ${m.id} is registered with dimension ${stored.dimension}, but the loaded files produce ${m.dimension}`,
    );
  }
  return stored;
}

/** Makes one model the active one, atomically (the unique partial index allows only one). */
export async function activateModel(db: Kysely<DB>, id: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('embedding_models').set({ is_active: false }).where('is_active', '=', true).where('id', '!=', id).execute();
    await trx
      .updateTable('embedding_models')
      .set({ is_active: true, status: 'ready', activated_at: new Date() })
      .where('id', '=', id)
      .execute();
  });
}

export async function setModelStatus(db: Db, id: string, status: EmbeddingModel['status']): Promise<void> {
  await db.updateTable('embedding_models').set({ status }).where('id', '=', id).execute();
}

/** Stable, valid index name for a model id (ids may contain '/' and '.'). */
export function modelIndexName(id: string): string {
  const slug = id
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .slice(0, 32);
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 8);
  return `product_embeddings_hnsw_${slug}_${hash}`;
}

/**
 * The model's own HNSW index: a partial expression index over embedding::halfvec(dimension) for
 * this model's rows. Queries must use the same expression and a literal model id to match it.
 */
export async function ensureModelIndex(db: Db, model: { id: string; dimension: number }): Promise<void> {
  if (!MODEL_ID.test(model.id) || !Number.isInteger(model.dimension)) throw new Error('invalid model for index');
  await sql`
    CREATE INDEX IF NOT EXISTS ${sql.id(modelIndexName(model.id))} ON product_embeddings
    USING hnsw ((embedding::halfvec(${sql.raw(String(model.dimension))})) halfvec_cosine_ops)
    WITH (m = 16, ef_construction = 64)
    WHERE model_id = ${sql.lit(model.id)}`.execute(db);
}

export async function dropModelIndex(db: Db, id: string): Promise<void> {
  await sql`DROP INDEX IF EXISTS ${sql.id(modelIndexName(id))}`.execute(db);
}
