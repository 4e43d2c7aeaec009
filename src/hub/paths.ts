/**
 * Where models live on disk (the hub cache's layout, and this project's former cache). Two layouts are read:
 * - the Hugging Face hub cache that @huggingface/hub, Python's huggingface_hub, transformers and
 *   transformers.js share: <HF_HUB_CACHE | HF_HOME/hub | ~/.cache/huggingface/hub>/models--<owner>--<name>/
 *   {blobs/, refs/<revision> (a commit hash), snapshots/<commit>/<files>}: a model another tool
 *   downloaded is used as it is;
 *   `vps model fetch` writes here too;
 * - this project's former cache, <cacheDir>/<owner>--<name> (what `vps model fetch` wrote before it
 *   wrote the hub cache): still read, so a model fetched by an earlier version is not fetched again.
 *   Not migrated: its files carry no commit to name a snapshot by, and moving them would break a
 *   directory someone pointed EMBEDDING_MODEL_DIR at.
 */
import fs from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { hubSettings } from '../config.js';

export const DEFAULT_MODEL_REPO = 'onnx-community/siglip2-base-patch16-224-ONNX';

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/** The project's former model cache (relative to the working directory; gitignored): read, no longer written. */
export function defaultModelCacheDir(): string {
  return resolve('.cache', 'models');
}

export function modelCachePath(repo: string, cacheDir: string = defaultModelCacheDir()): string {
  if (!REPO_ID.test(repo)) throw new Error(`Invalid model repository id: ${repo}`);
  return join(cacheDir, repo.replace('/', '--'));
}

/** The hub cache directory (HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub: config.ts resolves it as huggingface_hub does). */
export function hubCacheDir(): string {
  return hubSettings().cacheDir;
}

/** HF_HUB_OFFLINE (config.ts): use what the caches hold, never ask the hub. */
export function hubOffline(): boolean {
  return hubSettings().offline;
}

/** models--<owner>--<name> inside a hub cache. */
export function hubRepoDir(repo: string, cache: string = hubCacheDir()): string {
  if (!REPO_ID.test(repo)) throw new Error(`Invalid model repository id: ${repo}`);
  return join(cache, `models--${repo.replace('/', '--')}`);
}

/**
 * The snapshot directory of a revision in the hub cache, or null: a branch or tag is looked up in
 * refs/ (the commit it pointed to when last downloaded), a commit hash names the snapshot itself.
 */
export function hubSnapshotDir(repo: string, revision = 'main', cache: string = hubCacheDir()): string | null {
  const repoDir = hubRepoDir(repo, cache);
  let commit = revision;
  if (!/^[0-9a-f]{40}$/.test(revision)) {
    try {
      commit = fs.readFileSync(join(repoDir, 'refs', ...revision.split('/')), 'utf8').trim();
    } catch {
      return null;
    }
    if (!/^[0-9a-f]{40}$/.test(commit)) return null;
  }
  const dir = join(repoDir, 'snapshots', commit);
  return fs.existsSync(dir) ? dir : null;
}

/**
 * A model repository's directory as found on this machine: its snapshot in the hub cache, else the
 * project's former cache entry (revision main only: that layout kept no revisions); null when neither
 * holds its config.json.
 */
export function findCachedModel(repo: string, opts: { revision?: string; hubCache?: string; cacheDir?: string } = {}): string | null {
  if (!REPO_ID.test(repo)) return null;
  const snapshot = hubSnapshotDir(repo, opts.revision ?? 'main', opts.hubCache ?? hubCacheDir());
  if (snapshot && fs.existsSync(join(snapshot, 'config.json'))) return snapshot;
  if ((opts.revision ?? 'main') !== 'main') return null;
  const own = modelCachePath(repo, opts.cacheDir ?? defaultModelCacheDir());
  return fs.existsSync(join(own, 'config.json')) ? own : null;
}

/** The repository a directory is a hub-cache snapshot of (…/models--<owner>--<name>/snapshots/<rev>), else null. */
export function repoOfHubSnapshot(dir: string): string | null {
  const parts = resolve(dir).split(sep);
  const n = parts.length;
  if (n < 3 || parts[n - 2] !== 'snapshots') return null;
  const m = /^models--([\w.-]+?)--([\w.-]+)$/.exec(parts[n - 3]!);
  return m ? `${m[1]}/${m[2]}` : null;
}
