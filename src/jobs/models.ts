/** Model lifecycle operations shared by the admin GraphQL API and the CLI: list, activate (roll back), drop. */
import fs from 'node:fs';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { ModelRuntime } from '../catalog/model-runtime.js';
import { dropModelIndex, getModel, listModels, setModelStatus, type EmbeddingModel } from '../db/models.js';
import {
  buildModelIndex,
  countMissing,
  countModelVectors,
  deleteModelEmbeddings,
  modelIndexState,
  openJobForModel,
  switchActiveModel,
} from '../db/reindex.js';
import type { DB } from '../db/types.js';
import { modelCachePath } from '../embedding/index.js';

export interface ModelRecord extends EmbeddingModel {
  loaded: boolean;
  vectors: number;
}

export async function modelRecords(db: Kysely<DB>, runtime: ModelRuntime): Promise<ModelRecord[]> {
  const counts = await countModelVectors(db);
  return (await listModels(db)).map((m) => ({ ...m, loaded: runtime.embedder(m.id) !== null, vectors: counts.get(m.id) ?? 0 }));
}

async function requireModel(db: Kysely<DB>, id: string): Promise<EmbeddingModel> {
  const m = await getModel(db, id);
  if (!m) throw new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}`, { field: 'model', model: id });
  return m;
}

/**
 * Makes a model the active one (e.g. rolls a switch back): refused unless every product with an image has
 * a vector of that image for the model; builds its index first if it is missing. Atomic like the
 * switch at the end of a reindex.
 */
export async function activateModelChecked(
  db: Kysely<DB>,
  runtime: ModelRuntime,
  id: string,
  opts: { concurrentIndex: boolean; requireLoaded: boolean },
): Promise<EmbeddingModel> {
  const model = await requireModel(db, id);
  if (model.isActive) return model;
  if (opts.requireLoaded && !runtime.embedder(id)) {
    throw new AppError(
      ErrorCode.MODEL_UNAVAILABLE,
      `Model ${id} is not loaded in this process: search by image or text would fail. Load it (reindex(model: "${id}", onlyMissing: true) loads it from the model cache) first.`,
      { model: id },
    );
  }
  const missing = await countMissing(db, id);
  if (missing > 0) {
    throw new AppError(
      ErrorCode.CONFLICT,
      `Model ${id} has no vector for ${missing} product(s) (written since it was last built): run reindex(model: "${id}", onlyMissing: true); it switches when complete`,
      { model: id, missing },
    );
  }
  if ((await modelIndexState(db, id)) !== 'valid') await buildModelIndex(db, model, opts.concurrentIndex);
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
export async function dropModelEmbeddingsChecked(db: Kysely<DB>, id: string): Promise<number> {
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
  await setModelStatus(db, id, 'retired');
  return deleted;
}

/** Where a model reference's files are: the model cache (fetched by `vps model fetch`), if there. */
export function cachedModelDir(ref: string): string | null {
  let dir: string;
  try {
    dir = modelCachePath(ref);
  } catch {
    return null; // not an owner/name reference
  }
  return fs.existsSync(path.join(dir, 'config.json')) ? dir : null;
}
