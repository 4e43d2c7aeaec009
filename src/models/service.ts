/**
 * The models service: which embedders this process has loaded, and every registry operation the rest of
 * the service needs (resolvers, CLI, jobs, search, ingest call it; nothing else writes embedding_models).
 * Queries embed with the model they name (default: the active one), provided it is ready and loaded
 * (servingModel); writes embed with every loaded model whose vectors are wanted (the active one, any
 * model being built by a reindex, and any marked keep-current).
 */
import path from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import type { Database } from '../db/connect.js';
import { getActiveModel, getModel, listModels, setModelKeepCurrent, type EmbeddingModel } from '../db/models.js';
import type { Embedder } from '../embedding/index.js';
import type { Logger } from '../log.js';
import { findCachedModel } from '../hub/locate.js';
import { ensureModelIndex } from './hnsw.js';
import {
  activateChecked,
  activateIfNoneActive,
  dropEmbeddingsChecked,
  modelRecords,
  registerModel,
  type ModelRecord,
} from './lifecycle.js';

export type { EmbeddingModel, ModelRecord };

/** Opens a model directory as an embedder (the composition root supplies it: provider, workers, limits). */
export type ModelLoader = (dir: string) => Promise<Embedder>;

export interface LoadedModel {
  id: string;
  embedder: Embedder;
}

export interface ModelServiceOptions {
  /** Opens model directories (cache entries loaded on demand, --model-dir); without it nothing is loaded on demand. */
  load?: ModelLoader;
}

export class ModelService {
  private readonly loaded = new Map<string, Embedder>();
  /**
   * The active model as last read, for the search hot path (no registry read per query). Every replica
   * learns of a switch without LISTEN (which PgBouncer in transaction mode cannot carry): the search
   * statement itself checks that the model it ran for is still active (src/search/query.ts), and a
   * search that finds it retired calls invalidateActiveModel() and runs again on a fresh read.
   */
  private cachedActive: Promise<EmbeddingModel | null> | null = null;

  constructor(
    private readonly database: Database,
    private readonly log: Logger,
    private readonly opts: ModelServiceOptions = {},
  ) {}

  /**
   * Registers a loaded embedder's model (id: src/hub/ids.ts, derived when its files were read);
   * with no active model yet (a fresh catalog), it becomes the active one.
   */
  async add(embedder: Embedder, source: string): Promise<EmbeddingModel> {
    const info = embedder.info();
    // The variant the embedder opened (EMBEDDING_VARIANT=auto settles at load); null for fp32.
    const variant = info.variant === undefined || info.variant === 'fp32' ? null : info.variant;
    const model = await registerModel(this.database.db, { id: info.modelId, source, variant, dimension: info.dimension });
    // Its HNSW index up front, so ingest maintains it (a reindex drops it for the bulk load and rebuilds).
    await ensureModelIndex(this.database.db, model);
    this.loaded.set(model.id, embedder);
    if (await activateIfNoneActive(this.database.db, model.id)) {
      this.invalidateActiveModel();
      this.log.info({ model: model.id }, 'activated the loaded model (the catalog had none)');
    } else if (!model.isActive) {
      const active = await getActiveModel(this.database.db);
      if (active && active.id !== model.id)
        this.log.warn(
          { loaded: model.id, active: active.id },
          'the loaded model is not the active one: search by image or text needs the active model (reindex, then activateModel)',
        );
    }
    return (await getModel(this.database.db, model.id))!;
  }

  /** Loads a model directory (e.g. --model-dir) and registers it. */
  async addDir(dir: string): Promise<EmbeddingModel> {
    if (!this.opts.load) throw new Error('this ModelService cannot load model files');
    const embedder = await this.opts.load(dir);
    try {
      return await this.add(embedder, path.basename(dir));
    } catch (err) {
      await embedder.close();
      throw err;
    }
  }

  async activeModel(): Promise<EmbeddingModel | null> {
    return getActiveModel(this.database.db);
  }

  /** The active model from the process cache (read once; refreshed after invalidateActiveModel()). */
  async cachedActiveModel(): Promise<EmbeddingModel | null> {
    const pending = (this.cachedActive ??= getActiveModel(this.database.db));
    try {
      const model = await pending;
      // "None active" is not kept: the first activation must be seen at once, and that case is no hot path.
      if (!model && this.cachedActive === pending) this.cachedActive = null;
      return model;
    } catch (err) {
      if (this.cachedActive === pending) this.cachedActive = null;
      throw err;
    }
  }

  /** Forgets the cached active model (a switch here, or a search that found its model no longer active). */
  invalidateActiveModel(): void {
    this.cachedActive = null;
  }

  async activeModelId(): Promise<string | null> {
    return (await this.activeModel())?.id ?? null;
  }

  embedder(modelId: string): Embedder | null {
    return this.loaded.get(modelId) ?? null;
  }

  loadedModels(): LoadedModel[] {
    return [...this.loaded].map(([id, embedder]) => ({ id, embedder }));
  }

  /** The embedder for a model, or a clear MODEL_UNAVAILABLE. */
  require(modelId: string | null): Embedder {
    if (!modelId) {
      throw new AppError(
        ErrorCode.MODEL_UNAVAILABLE,
        'No embedding model is active: start the service with a model (see README, "Models").',
      );
    }
    const e = this.loaded.get(modelId);
    if (!e) {
      const loaded = [...this.loaded.keys()];
      throw new AppError(
        ErrorCode.MODEL_UNAVAILABLE,
        loaded.length
          ? `The active model ${modelId} is not loaded in this process (loaded: ${loaded.join(', ')}).`
          : `No embedding model is loaded in this process; the active model is ${modelId}. Set EMBEDDING_MODEL_DIR or fetch the model (npm run model -- fetch).`,
        { model: modelId },
      );
    }
    return e;
  }

  /**
   * The model a query names (none: the active one) with its embedder, when it can answer: registered,
   * ready (the active model always is), and loaded in this process. Anything else is MODEL_UNAVAILABLE
   * naming the reason; a query never loads model files (that takes seconds and memory: reindex or
   * --model-dir do it).
   */
  async servingModel(ref?: string | null): Promise<{ model: EmbeddingModel; embedder: Embedder }> {
    const id = ref?.trim() || null;
    if (!id) {
      const active = await getActiveModel(this.database.db);
      if (!active)
        throw new AppError(ErrorCode.MODEL_UNAVAILABLE, 'No embedding model is active yet: load one (README, "Models") and ingest products.');
      return { model: active, embedder: this.require(active.id) };
    }
    const model = await getModel(this.database.db, id);
    const unavailable = (why: string) => new AppError(ErrorCode.MODEL_UNAVAILABLE, `Model ${id} cannot answer queries: ${why}`, { model: id });
    if (!model) throw unavailable('it is not registered (see the models query)');
    if (!model.isActive && model.status !== 'ready') {
      throw unavailable(
        model.status === 'building'
          ? 'its vectors are still being built (reindex)'
          : 'it is retired (its vectors are no longer kept current; reindex it with activate: false)',
      );
    }
    const embedder = this.loaded.get(id);
    if (!embedder) throw unavailable('its files are not loaded in this process');
    return { model, embedder };
  }

  /**
   * At serve start: loads from the model cache every registered model that can answer queries (ready, or
   * marked keep-current) and is not loaded yet, so a model built by `vps reindex --no-activate` in another
   * process answers `model:` and compareModels after a restart. A model that fails to load is logged and
   * stays MODEL_UNAVAILABLE; it never stops the service.
   */
  async loadServable(): Promise<string[]> {
    const loaded: string[] = [];
    for (const m of await listModels(this.database.db)) {
      if (this.loaded.has(m.id) || !(m.status === 'ready' || m.keepCurrent) || !findCachedModel(m.id)) continue;
      try {
        await this.resolve(m.id);
        loaded.push(m.id);
        this.log.info({ model: m.id }, 'loaded a ready model from the model cache: it answers model: and compareModels');
      } catch (err) {
        this.log.warn({ model: m.id, err: err instanceof Error ? err.message : String(err) }, 'a ready model could not be loaded');
      }
    }
    return loaded;
  }

  /** Marks a model to be kept current by ingest (or not); returns the updated row. */
  async setKeepCurrent(id: string, keep: boolean): Promise<EmbeddingModel> {
    const model = await getModel(this.database.db, id);
    if (!model) throw new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}`, { field: 'model', model: id });
    await setModelKeepCurrent(this.database.db, id, keep);
    return { ...model, keepCurrent: keep };
  }

  /** Loaded models whose vectors new or changed product images must get: active, being built, or kept current. */
  async writeTargets(): Promise<Array<LoadedModel & { dimension: number }>> {
    const models = await listModels(this.database.db);
    return models
      .filter((m) => (m.isActive || m.status === 'building' || m.keepCurrent) && this.loaded.has(m.id))
      .map((m) => ({ id: m.id, dimension: m.dimension, embedder: this.loaded.get(m.id)! }));
  }

  /** The registry, with what this process has loaded and how many vectors each model has. */
  async list(): Promise<ModelRecord[]> {
    return modelRecords(this.database.db, (id) => this.loaded.has(id));
  }

  async record(id: string): Promise<ModelRecord | null> {
    return (await this.list()).find((m) => m.id === id) ?? null;
  }

  /**
   * Makes a model the active one (roll back, or activate one built with activate: false). requireLoaded:
   * refuse a model this process could not embed queries with (the API; the CLI serves no queries).
   */
  async activate(id: string, opts: { requireLoaded: boolean }): Promise<EmbeddingModel> {
    const model = await activateChecked(this.database, id, { requireLoaded: opts.requireLoaded, isLoaded: (m) => this.loaded.has(m) });
    this.invalidateActiveModel();
    this.log.info({ model: id }, 'model activated');
    return model;
  }

  /** Deletes an inactive model's vectors and index; returns how many vectors. */
  async dropEmbeddings(id: string): Promise<number> {
    return dropEmbeddingsChecked(this.database.db, id);
  }

  /**
   * Resolves a model reference (a registered id, or a hub repository in the model cache, loaded on demand;
   * none: the active model) to a registered model this process has loaded.
   */
  async resolve(ref: string | null | undefined): Promise<{ model: EmbeddingModel; embedder: Embedder }> {
    const db = this.database.db;
    let id = ref?.trim() || null;
    if (!id) {
      const active = await getActiveModel(db);
      if (!active) throw new AppError(ErrorCode.BAD_USER_INPUT, 'No model given and no model is active', { field: 'model' });
      id = active.id;
    }
    let embedder = this.loaded.get(id) ?? null;
    const dir = embedder ? null : findCachedModel(id);
    if (dir && this.opts.load) {
      const loaded = await this.opts.load(dir).catch((err: unknown) => {
        throw new AppError(
          ErrorCode.MODEL_UNAVAILABLE,
          `Model ${id} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
          { model: id },
        );
      });
      // The id comes from the same derivation (ids.ts) that names a cache entry, so this holds unless the
      // entry's .source.json names another repository (files copied over another model's).
      const loadedId = loaded.info().modelId;
      if (loadedId !== id) {
        await loaded.close();
        throw new AppError(ErrorCode.CONFLICT, `The files found for ${id} are model ${loadedId}`, { model: id });
      }
      try {
        await this.add(loaded, id);
      } catch (err) {
        await loaded.close();
        throw err; // e.g. CONFLICT: registered with another dimension
      }
      embedder = loaded;
    }
    const model = await getModel(db, id);
    if (!embedder) {
      throw model
        ? new AppError(
            ErrorCode.MODEL_UNAVAILABLE,
            `Model ${id} is registered but its files are not loaded in this process (fetch it: vps model fetch ${id})`,
            { model: id },
          )
        : new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}: not loaded, not registered, not in the model cache`, {
            field: 'model',
            model: id,
          });
    }
    if (!model) throw new AppError(ErrorCode.NOT_FOUND, `Unknown model ${id}`, { field: 'model', model: id });
    const dimension = embedder.info().dimension;
    if (dimension !== model.dimension) {
      throw new AppError(
        ErrorCode.CONFLICT,
        `Model ${id} is registered with dimension ${model.dimension}, but its loaded files produce ${dimension}`,
        { model: id },
      );
    }
    return { model, embedder };
  }

  async close(): Promise<void> {
    await Promise.all([...this.loaded.values()].map((e) => e.close()));
    this.loaded.clear();
  }
}
