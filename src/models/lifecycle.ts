/**
 * A model's life in the registry: registered (when its files are loaded), building (a reindex computes its
 * vectors), activated (the one place a model becomes the active one: activateModel below and the
 * switch at the end of a reindex both go through switchActiveModel), retired, dropped.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { Database } from '../db/connect.js';
import { countMissing, countModelVectors, deleteModelEmbeddings } from '../db/embeddings.js';
import { activateModel, getModel, insertModel, listModels, setModelStatus, type EmbeddingModel } from '../db/models.js';
import { openJobForModel } from '../db/reindex-jobs.js';
import type { DB, Db } from '../db/types.js';
import { dropCategoryIndexes } from './category-indexes.js';
import { buildModelIndex, dropModelIndex, modelIndexState, type IndexState } from './hnsw.js';
import { MODEL_ID } from '../hub/ids.js';
import { lockOutIngest } from './switch-lock.js';

export type { EmbeddingModel };

export interface ModelRecord extends EmbeddingModel {
  loaded: boolean;
  vectors: number;
}

/** Registers a model (idempotent). A known id with another dimension is a conflict, not an update. */
export async function registerModel(
  db: Db,
  m: { id: string; source: string; variant: string | null; dimension: number },
): Promise<EmbeddingModel> {
  if (!MODEL_ID.test(m.id)) throw new AppError(ErrorCode.BAD_USER_INPUT, `"${m.id}" is not a valid model id`);
  const stored = await insertModel(db, m);
  if (stored.dimension !== m.dimension) {
    throw new AppError(
      ErrorCode.CONFLICT,
      `Model ${m.id} is registered with dimension ${stored.dimension}, but the loaded files produce ${m.dimension}`,
      { model: m.id },
    );
  }
  return stored;
}

/** With no active model (a fresh catalog), this one becomes active; true when it did. */
export async function activateIfNoneActive(db: Kysely<DB>, id: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    // Serialises two processes registering their first model at once; the unique index would refuse the second anyway.
    await sql`LOCK TABLE embedding_models IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
    const active = await trx.selectFrom('embedding_models').select('id').where('is_active', '=', true).executeTakeFirst();
    if (active) return false;
    await activateModel(trx, id);
    return true;
  });
}

export async function requireModel(db: Db, id: string): Promise<EmbeddingModel> {
  const m = await getModel(db, id);
  if (!m) throw new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}`, { field: 'model', model: id });
  return m;
}

export async function modelRecords(db: Db, isLoaded: (id: string) => boolean): Promise<ModelRecord[]> {
  const counts = await countModelVectors(db);
  return (await listModels(db)).map((m) => ({ ...m, loaded: isLoaded(m.id), vectors: counts.get(m.id) ?? 0 }));
}

/**
 * Makes the model the active one in one transaction, only if every product with an image has a vector of
 * that image for it and its index is valid. Writers of vectors are held off (SHARE lock) between the
 * check and the switch, so no product can slip in unembedded. The previous active model is retired
 * (its vectors stay until dropModelEmbeddings).
 */
export async function switchActiveModel(trx: Transaction<DB>, modelId: string): Promise<{ missing: number; index: IndexState }> {
  // first: ingest transactions in flight commit before the count below (switch-lock.ts)
  await lockOutIngest(trx);
  await sql`LOCK TABLE product_embeddings IN SHARE MODE`.execute(trx);
  const index = await modelIndexState(trx, modelId);
  const missing = await countMissing(trx, modelId);
  if (missing > 0 || index !== 'valid') return { missing, index };
  await activateModel(trx, modelId);
  return { missing: 0, index };
}

/**
 * Makes a model the active one (e.g. rolls a switch back): refused unless every product with an image has
 * a vector of that image for the model; builds its index first if it is missing.
 */
export async function activateChecked(
  database: Database,
  id: string,
  opts: { requireLoaded: boolean; isLoaded: (id: string) => boolean },
): Promise<EmbeddingModel> {
  const { db } = database;
  const model = await requireModel(db, id);
  if (model.isActive) return model;
  if (opts.requireLoaded && !opts.isLoaded(id)) {
    throw new AppError(
      ErrorCode.MODEL_UNAVAILABLE,
      `Model ${id} is not loaded in this process: search by image or text would fail. Load it first (a reindex of the model with onlyMissing, CLI --only-missing, loads it from the model cache).`,
      { model: id },
    );
  }
  const missing = await countMissing(db, id);
  if (missing > 0) {
    throw new AppError(
      ErrorCode.CONFLICT,
      `Model ${id} has no vector for ${missing} product(s) (written since it was last built): reindex it with onlyMissing (CLI: --only-missing); it switches when complete`,
      { model: id, missing },
    );
  }
  await buildModelIndex(db, model, database.kind);
  const r = await db.transaction().execute((trx) => switchActiveModel(trx, id));
  if (r.missing > 0 || r.index !== 'valid') {
    throw new AppError(
      ErrorCode.CONFLICT,
      `Model ${id} could not be activated: ${r.missing} product(s) missing a vector, index ${r.index}; retry`,
      { model: id },
    );
  }
  return (await getModel(db, id))!;
}

/** Deletes a model's vectors and index (not the active model, not while a reindex builds it). */
export async function dropEmbeddingsChecked(db: Kysely<DB>, id: string): Promise<number> {
  const model = await requireModel(db, id);
  if (model.isActive) throw new AppError(ErrorCode.CONFLICT, `Model ${id} is the active model: activate another one first`, { model: id });
  const open = await openJobForModel(db, id);
  if (open)
    throw new AppError(ErrorCode.CONFLICT, `A reindex of ${id} is ${open.state} (job ${open.id}): cancel it first`, {
      model: id,
      job: open.id,
    });
  const deleted = await deleteModelEmbeddings(db, id);
  await dropModelIndex(db, id);
  await dropCategoryIndexes(db, id);
  await setModelStatus(db, id, 'retired');
  return deleted;
}

/** A reindex starts computing the model's vectors (the active model keeps its status). */
export async function markBuilding(db: Db, model: EmbeddingModel): Promise<void> {
  if (!model.isActive && model.status !== 'building') await setModelStatus(db, model.id, 'building');
}

/** A reindex ended without activating the model (done with activate: false, failed, cancelled). */
export async function markBuildEnded(db: Db, modelId: string): Promise<void> {
  const model = await getModel(db, modelId);
  if (model && !model.isActive && model.status === 'building') await setModelStatus(db, model.id, 'ready');
}
