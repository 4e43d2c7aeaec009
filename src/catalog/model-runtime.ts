/**
 * Which embedding models this process has loaded, and how they relate to the registry:
 * queries embed with the active model's embedder; writes embed with every loaded model whose
 * vectors are wanted (the active one and any model being built by a reindex).
 */
import type { Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import type { Embedder } from '../embedding/index.js';
import { activateModel, ensureModelIndex, getActiveModel, listModels, registerModel, type EmbeddingModel } from '../db/models.js';
import type { DB } from '../db/types.js';
import type { Logger } from '../log.js';

export interface LoadedModel {
  id: string;
  embedder: Embedder;
}

export class ModelRuntime {
  private readonly loaded = new Map<string, Embedder>();

  constructor(
    private readonly db: Kysely<DB>,
    private readonly log: Logger,
  ) {}

  /**
   * Registers a loaded embedder's model; with no active model yet (a fresh catalog), it becomes the
   * active one. Its HNSW index is created up front so ingest maintains it.
   */
  async add(embedder: Embedder, source: string, variant: string | null): Promise<EmbeddingModel> {
    const info = embedder.info();
    const model = await registerModel(this.db, { id: info.modelId, source, variant, dimension: info.dimension });
    await ensureModelIndex(this.db, model);
    this.loaded.set(model.id, embedder);
    const active = await getActiveModel(this.db);
    if (!active) {
      await activateModel(this.db, model.id);
      this.log.info({ model: model.id }, 'activated the loaded model (the catalog had none)');
    } else if (active.id !== model.id) {
      this.log.warn(
        { loaded: model.id, active: active.id },
        'the loaded model is not the active one: search by image or text needs the active model (reindex, then activateModel)',
      );
    }
    return (await listModels(this.db)).find((m) => m.id === model.id)!;
  }

  async activeModelId(): Promise<string | null> {
    return (await getActiveModel(this.db))?.id ?? null;
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

  /** Loaded models whose vectors new or changed product images must get: active or being built. */
  async writeTargets(): Promise<Array<LoadedModel & { dimension: number }>> {
    const models = await listModels(this.db);
    return models
      .filter((m) => (m.isActive || m.status === 'building') && this.loaded.has(m.id))
      .map((m) => ({ id: m.id, dimension: m.dimension, embedder: this.loaded.get(m.id)! }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.loaded.values()].map((e) => e.close()));
    this.loaded.clear();
  }
}
