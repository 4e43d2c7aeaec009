/** Where fetched models live: <cacheDir>/<owner>--<name>[/variant files inside]. */
import { join, resolve } from 'node:path';

export const DEFAULT_MODEL_REPO = 'onnx-community/siglip2-base-patch16-224-ONNX';

/** Default cache directory for fetched models (relative to the working directory; gitignored). */
export function defaultModelCacheDir(): string {
  return resolve('.cache', 'models');
}

export function modelCachePath(repo: string, cacheDir: string = defaultModelCacheDir()): string {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new Error(`Invalid model repository id: ${repo}`);
  return join(cacheDir, repo.replace('/', '--'));
}
