/**
 * The lookup order: where this machine has a model's files, and the fetch when it has none. One answer for
 * the service's first start, the CLI and the models service (which loads a model by id on demand).
 */
import fs from 'node:fs';
import { join, resolve } from 'node:path';
import { hubSettings } from '../config.js';
import { AppError, ErrorCode } from '../errors.js';
import { fetchModel, type FetchOptions } from './fetch.js';
import { DEFAULT_MODEL_REPO, defaultModelCacheDir, hubRepoDir, hubSnapshotDir, modelCachePath, REPO_ID } from './paths.js';
import { hasVariantFiles } from './variants.js';

const fail = (message: string, details?: Record<string, unknown>, cause?: unknown) =>
  new AppError(ErrorCode.MODEL_UNAVAILABLE, message, details, cause === undefined ? undefined : { cause });

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * A model repository's directory as found on this machine: its snapshot in the hub cache, else the
 * project's former cache entry (revision main only: that layout kept no revisions); null when neither
 * holds its config.json, and for a reference that is no repository (a registered id with @variant). The
 * models service loads `model: "<owner>/<name>"` from here.
 */
export function findCachedModel(repo: string, opts: { revision?: string; hubCache?: string; cacheDir?: string } = {}): string | null {
  if (!REPO_ID.test(repo)) return null;
  const snapshot = hubSnapshotDir(repo, opts.revision ?? 'main', opts.hubCache ?? hubSettings().cacheDir);
  if (snapshot && fs.existsSync(join(snapshot, 'config.json'))) return snapshot;
  if ((opts.revision ?? 'main') !== 'main') return null;
  const own = modelCachePath(repo, opts.cacheDir ?? defaultModelCacheDir());
  return fs.existsSync(join(own, 'config.json')) ? own : null;
}

/**
 * For `npm start`: the model if this machine has it, else fetch it into the hub cache (progress through
 * `onProgress`). Looked up in this order: `modelDir` when given; the hub cache's snapshot of the revision
 * (ours, or one another Hugging Face tool downloaded); the project's former cache
 * (.cache/models/<owner>--<name>, still read, never written). A place counts when it holds the variant's
 * files; whether they make a model the engine can run is the engine's to say when it opens them (a
 * snapshot with an unexpected config is reported as such, not fetched again). Offline, one clear
 * MODEL_UNAVAILABLE that names the fetch command and the offline demo.
 */
export async function ensureModel(
  opts: FetchOptions & { modelDir?: string },
  log?: { info: (...args: unknown[]) => void; warn: (...args: unknown[]) => void },
): Promise<string> {
  const repo = opts.repo ?? DEFAULT_MODEL_REPO;
  const provider = opts.provider ?? 'cpu';
  const holds = (dir: string) => hasVariantFiles(dir, opts.variant, provider);
  if (opts.modelDir) {
    if (await holds(opts.modelDir)) return opts.modelDir;
    // an explicit directory that is not a model: don't guess a repository; the engine's error says why
    if (!opts.repo) return opts.modelDir;
  }
  const env = hubSettings();
  const cache = opts.cacheDir ? resolve(opts.cacheDir) : env.cacheDir;
  const snapshot = hubSnapshotDir(repo, opts.revision ?? 'main', cache);
  if (snapshot && (await holds(snapshot))) return snapshot;
  if (!opts.revision || opts.revision === 'main') {
    // the project's former layout, written by earlier versions of `vps model fetch` (always main)
    const legacy = modelCachePath(repo, opts.legacyCacheDir ?? defaultModelCacheDir());
    if (await holds(legacy)) return legacy;
  }
  const where = hubRepoDir(repo, cache);
  if (env.offline) {
    throw fail(`Model ${repo} is neither in the Hugging Face hub cache (${where}) nor in .cache/models, and HF_HUB_OFFLINE is set`, {
      repo,
      dir: where,
    });
  }
  log?.info({ repo, dir: where }, 'model not in cache; fetching it');
  try {
    return await fetchModel({ ...opts, repo, cacheDir: cache });
  } catch (err) {
    throw fail(
      `Model ${repo} is not in ${where} and could not be fetched (${reason(err)}). ` +
        `Fetch it where the hub is reachable with \`npm run model -- fetch ${repo}${opts.variant ? ` --variant ${opts.variant}` : ''}\` ` +
        `(HF_ENDPOINT/HF_TOKEN are honoured) and copy the hub cache folder ${where} here, or run the offline demo, which uses a generated tiny model.`,
      { repo, dir: where },
      err,
    );
  }
}
