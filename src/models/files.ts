/** Where a model's files are found: the model cache (filled by `vps model fetch`) or a directory. */
import fs from 'node:fs';
import path from 'node:path';
import { modelCachePath } from '../embedding/index.js';

/** The cache entry of a hub reference (owner/name), if its files are there. */
export function cachedModelDir(ref: string): string | null {
  let dir: string;
  try {
    dir = modelCachePath(ref);
  } catch {
    return null; // not an owner/name reference
  }
  return fs.existsSync(path.join(dir, 'config.json')) ? dir : null;
}

/** Opens a model directory as an embedder (the composition root supplies it: provider, workers, limits). */
export type ModelLoader = (dir: string) => Promise<import('../embedding/index.js').Embedder>;
