/**
 * embedding_models: the registry rows. Only src/models/ calls these; it decides when a model is
 * registered, activated or retired (src/models/lifecycle.ts).
 */
import { sql, type Selectable } from 'kysely';
import type { Db, EmbeddingModelsTable } from './types.js';

export interface EmbeddingModel {
  id: string;
  source: string;
  variant: string | null;
  dimension: number;
  status: 'building' | 'ready' | 'retired';
  isActive: boolean;
  /** Ingest keeps embedding new images for it while it is neither active nor building. */
  keepCurrent: boolean;
  createdAt: Date;
  activatedAt: Date | null;
}

function toModel(r: Selectable<EmbeddingModelsTable>): EmbeddingModel {
  return {
    id: r.id,
    source: r.source,
    variant: r.variant,
    dimension: r.dimension,
    status: r.status,
    isActive: r.is_active,
    keepCurrent: r.keep_current,
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

/** Inserts a registry row unless the id is known; returns the stored row (the caller checks its dimension). */
export async function insertModel(
  db: Db,
  m: { id: string; source: string; variant: string | null; dimension: number },
): Promise<EmbeddingModel> {
  await db
    .insertInto('embedding_models')
    .values({ id: m.id, source: m.source, variant: m.variant, dimension: m.dimension })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  return (await getModel(db, m.id))!;
}

/**
 * The activation: the previous active model is retired (its vectors stay for a rollback) and this one
 * becomes active, in one transaction. Two statements, retire first, because the unique partial index
 * on is_active is checked row by row and would refuse a single UPDATE that swaps the flag.
 */
export async function activateModel(db: Db, id: string): Promise<void> {
  const run = async (trx: Db) => {
    await trx
      .updateTable('embedding_models')
      .set({ is_active: false, status: 'retired' })
      .where('is_active', '=', true)
      .where('id', '!=', id)
      .execute();
    await trx
      .updateTable('embedding_models')
      .set({ is_active: true, status: 'ready', activated_at: sql<Date>`now()` })
      .where('id', '=', id)
      .where('is_active', '=', false)
      .execute();
  };
  if (db.isTransaction) await run(db);
  else await db.transaction().execute(run);
}

export async function setModelStatus(db: Db, id: string, status: EmbeddingModel['status']): Promise<void> {
  await db.updateTable('embedding_models').set({ status }).where('id', '=', id).execute();
}

export async function setModelKeepCurrent(db: Db, id: string, keep: boolean): Promise<void> {
  await db.updateTable('embedding_models').set({ keep_current: keep }).where('id', '=', id).execute();
}
