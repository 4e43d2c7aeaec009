/**
 * The standard Hugging Face hub cache: a model laid out as huggingface_hub lays it out (blobs named by
 * hash, snapshots/<commit>/ of relative symlinks, refs/main) is found through HF_HUB_CACHE / HF_HOME,
 * loaded as it is, named by its repository id, and never fetched again; HF_HUB_OFFLINE forbids fetches.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { hubSettings } from '../../../src/config.js';
import { loadModelDir } from '../../../src/embedding/model-dir.js';
import { deriveModelId } from '../../../src/hub/ids.js';
import { ensureModel } from '../../../src/hub/locate.js';
import { findCachedModel, hubSnapshotDir, repoOfHubSnapshot } from '../../../src/hub/paths.js';
import { cleanupDirs, tempDir, tinyModel } from '../embedding/helpers.js';
import { layOutAsHuggingfaceHub } from './hub-imitation.js';

const REPO = 'acme/siglip-tiny';
const COMMIT = 'a'.repeat(40);

/** Lays a model directory out as huggingface_hub does in its cache. */
const intoHubCache = (modelDir: string, cache: string) => layOutAsHuggingfaceHub(modelDir, cache, REPO, COMMIT);

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['HF_HUB_CACHE', 'HF_HOME', 'HF_HUB_OFFLINE']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});
afterAll(cleanupDirs);

describe('the Hugging Face hub cache', () => {
  it('resolves HF_HUB_CACHE, then HF_HOME/hub, then ~/.cache/huggingface/hub', () => {
    const hubCacheDir = (env: NodeJS.ProcessEnv) => hubSettings(env).cacheDir; // config.ts reads every setting
    expect(hubCacheDir({ HF_HUB_CACHE: '/x/hub', HF_HOME: '/y' })).toBe('/x/hub');
    expect(hubCacheDir({ HF_HOME: '/y' })).toBe('/y/hub');
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/old/hub', HF_HOME: '/y' })).toBe('/old/hub');
    expect(hubCacheDir({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/huggingface/hub');
    expect(hubCacheDir({ HOME: '/home/u' })).toMatch(/[\\/]\.cache[\\/]huggingface[\\/]hub$/);
  });

  it('finds a snapshot another tool downloaded, loads it as it is and names it by its repository', async () => {
    const cache = await tempDir('vps-hfcache-');
    const snapshot = await intoHubCache(await tinyModel(), cache);
    process.env.HF_HUB_CACHE = cache;
    expect(hubSnapshotDir(REPO)).toBe(snapshot);
    expect(hubSnapshotDir(REPO, COMMIT)).toBe(snapshot);
    expect(hubSnapshotDir(REPO, 'v2')).toBeNull();
    expect(findCachedModel(REPO, { cacheDir: await tempDir() })).toBe(snapshot);
    expect(repoOfHubSnapshot(snapshot)).toBe(REPO);
    expect(deriveModelId({ dir: snapshot, nameInConfig: 'some/other-checkpoint' })).toBe(REPO);
    expect((await loadModelDir(snapshot)).modelId).toBe(REPO);
    // No request: the hub URL points at a closed port and HF_HUB_OFFLINE is set.
    process.env.HF_HUB_OFFLINE = '1';
    expect(await ensureModel({ repo: REPO, hubUrl: 'http://127.0.0.1:9' })).toBe(snapshot);
  });

  it('HF_HUB_OFFLINE: a model in neither cache is an error naming the setting, not a download', async () => {
    process.env.HF_HUB_CACHE = await tempDir('vps-hfcache-');
    process.env.HF_HUB_OFFLINE = '1';
    await expect(ensureModel({ repo: 'acme/absent', cacheDir: await tempDir(), hubUrl: 'http://127.0.0.1:9' })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/HF_HUB_OFFLINE/),
    });
  });
});
