/**
 * Model ids: the one place that says what a model is called. The registry, the queue names, the HNSW
 * index names and every lookup by reference use these functions, so a model found in the cache under
 * `org--name` is the model `org/name` whatever its config.json says about the checkpoint it came from.
 */
import path from 'node:path';
import { defaultModelCacheDir, repoOfHubSnapshot } from './paths.js';

/** Model ids as the registry accepts them (migration 0005): hub-style names, optionally @variant. */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._/@-]{0,127}$/;

/**
 * The hub repository a directory stands for when it is a cache entry: a snapshot in a Hugging Face hub
 * cache (…/models--<owner>--<name>/snapshots/<rev>, wherever that cache is) or an entry of the project's
 * own cache (<cache>/<owner>--<name>).
 */
export function cacheRepoOf(dir: string, cacheDir: string = defaultModelCacheDir()): string | null {
  const snapshotOf = repoOfHubSnapshot(dir);
  if (snapshotOf) return snapshotOf;
  const abs = path.resolve(dir);
  if (path.dirname(abs) !== path.resolve(cacheDir)) return null;
  const m = /^([\w.-]+?)--([\w.-]+)$/.exec(path.basename(abs));
  return m ? `${m[1]}/${m[2]}` : null;
}

/**
 * A model directory's id, in this order: the repository it was fetched from (.source.json), the cache
 * entry it sits in, the name its config.json gives (`_name_or_path`, unless a path), the folder name;
 * a non-fp32 variant is appended as @variant.
 */
export function deriveModelId(f: {
  dir: string;
  fetchedFrom?: string | null;
  nameInConfig?: string | null;
  variant?: string | null;
}): string {
  const named = f.nameInConfig && !f.nameInConfig.startsWith('/') && !f.nameInConfig.startsWith('.') ? f.nameInConfig : null;
  const base = f.fetchedFrom || cacheRepoOf(f.dir) || named || path.basename(path.resolve(f.dir));
  return modelIdFor(base, f.variant ?? undefined);
}

/** The model id of a variant: the base id, with `@variant` for anything but fp32 (its vectors differ). */
export function modelIdFor(baseModelId: string, variant?: string): string {
  return variant && variant !== 'fp32' ? `${baseModelId}@${variant}` : baseModelId;
}
