/** Where a model's files are found: the model cache (filled by `vps model fetch`) or a directory. */
import { findCachedModel } from '../embedding/hub-paths.js';

/**
 * The directory of a hub reference (owner/name[@variant]): its snapshot in the Hugging Face hub cache
 * (HF_HUB_CACHE / HF_HOME, shared with other tools), else the project's own cache entry; null if neither.
 */
export function cachedModelDir(ref: string): string | null {
  return findCachedModel(ref); // an id with @variant is no repository: null, as before
}

/** Opens a model directory as an embedder (the composition root supplies it: provider, workers, limits). */
export type ModelLoader = (dir: string) => Promise<import('../embedding/index.js').Embedder>;
