import { cp, lstat, mkdir, readFile, readdir, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runModelCommand } from '../../../src/cli/model.js';
import { loadModelDir } from '../../../src/embedding/model-dir.js';
import { destinationInside, fetchModel } from '../../../src/hub/fetch.js';
import { ensureModel, findCachedModel } from '../../../src/hub/locate.js';
import { hubRepoDir, modelCachePath } from '../../../src/hub/paths.js';
import { selectFiles } from '../../../src/hub/variants.js';
import { cleanupDirs, tempDir, tinyModel } from '../embedding/helpers.js';
import { blobName, COMMIT, layOutAsHuggingfaceHub, REPO, sha256, startHub, type Hub } from './hub-imitation.js';

let hub: Hub;
let source: string;
beforeAll(async () => {
  source = await tinyModel();
  hub = await startHub(source);
});
afterAll(async () => {
  hub.server.close();
  await cleanupDirs();
});
beforeEach(() => {
  hub.requests.length = 0;
});
const saved = { ...process.env };
afterEach(() => {
  for (const k of ['HF_HUB_CACHE', 'HF_HOME', 'HF_HUB_OFFLINE']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  hub.refs.clear();
  hub.refs.set('main', COMMIT);
});
const snapshotIn = (cache: string, commit = COMMIT) => join(hubRepoDir(REPO, cache), 'snapshots', commit);
const resolves = () => hub.requests.filter((r) => r.url.includes('/resolve/'));

describe('model fetch from a hub-compatible server', () => {
  it('downloads the model directory, verifies it, and sends the token', async () => {
    const cacheDir = await tempDir();
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, token: 'hf_test' });
    expect(dir).toBe(snapshotIn(cacheDir));
    for (const f of ['config.json', 'tokenizer.json', 'onnx/vision_model.onnx', 'onnx/text_model.onnx']) {
      expect((await readFile(join(dir, f))).equals(await readFile(join(source, f)))).toBe(true);
    }
    expect(hub.requests.every((r) => r.auth === 'Bearer hf_test')).toBe(true);
    // the revision is resolved first, then listed and downloaded at its commit
    expect(hub.requests[0]!.url).toBe(`/api/models/${REPO}/revision/main`);
    expect(hub.requests.filter((r) => r.url.includes('/tree/')).every((r) => r.url.endsWith(`/tree/${COMMIT}`))).toBe(true);
    expect(resolves().every((r) => r.url.startsWith(`/${REPO}/resolve/${COMMIT}/`))).toBe(true);
    // a second fetch is a no-op apart from the revision and the listing
    hub.requests.length = 0;
    await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    expect(resolves()).toHaveLength(0);
  });

  it('writes the hub cache layout huggingface_hub writes: blobs by hash, relative symlinks, refs', async () => {
    const cacheDir = await tempDir();
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    const repoDir = hubRepoDir(REPO, cacheDir);
    expect(repoDir).toBe(join(cacheDir, 'models--acme--tiny-siglip-ONNX'));
    expect((await readFile(join(repoDir, 'refs', 'main'), 'utf8')).trim()).toBe(COMMIT);
    const blobs = await readdir(join(repoDir, 'blobs'));
    expect(blobs.some((b) => b.endsWith('.incomplete'))).toBe(false);
    for (const f of ['config.json', 'onnx/vision_model.onnx']) {
      const pointer = join(dir, f);
      expect((await lstat(pointer)).isSymbolicLink()).toBe(true);
      const target = await readlink(pointer);
      expect(isAbsolute(target)).toBe(false);
      // ../../blobs/<etag> from the snapshot's top level, one more ../ per folder (onnx/)
      expect(target).toBe(`${'../'.repeat(2 + f.split('/').length - 1)}blobs/${blobName(f, hub.files.get(f)!)}`);
      expect(await realpath(pointer)).toBe(await realpath(join(repoDir, 'blobs', blobName(f, hub.files.get(f)!))));
    }
    // only the snapshot's files: no manifest of ours beside them, nothing another tool would not expect
    expect((await readdir(dir)).sort()).toEqual([
      'config.json',
      'onnx',
      'preprocessor_config.json',
      'special_tokens_map.json', // optional in a repository, fetched where it has one
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
  });

  it('honours HF_ENDPOINT and HF_TOKEN and reports progress', async () => {
    const cacheDir = await tempDir();
    const prev = { e: process.env.HF_ENDPOINT, t: process.env.HF_TOKEN };
    process.env.HF_ENDPOINT = hub.url + '/';
    process.env.HF_TOKEN = 'hf_env';
    const seen: number[] = [];
    try {
      await fetchModel({ repo: REPO, cacheDir, onProgress: (p) => seen.push(p.done / p.total) });
    } finally {
      process.env.HF_ENDPOINT = prev.e;
      process.env.HF_TOKEN = prev.t;
      if (prev.e === undefined) delete process.env.HF_ENDPOINT;
      if (prev.t === undefined) delete process.env.HF_TOKEN;
    }
    expect(hub.requests.some((r) => r.auth === 'Bearer hf_env')).toBe(true);
    expect(seen.at(-1)).toBe(1);
    expect(seen.some((x) => x > 0 && x < 1)).toBe(true);
  });

  it('resumes an interrupted download with a Range request', async () => {
    const cacheDir = await tempDir();
    const file = 'onnx/vision_model.onnx';
    const size = hub.files.get(file)!.length;
    hub.cutAfter.set(file, Math.floor(size / 2));
    await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/interrupted.*run the same command again/),
    });
    // huggingface_hub's partial-download name, so either tool resumes what the other left
    const part = join(hubRepoDir(REPO, cacheDir), 'blobs', `${sha256(hub.files.get(file)!)}.incomplete`);
    const partial = (await stat(part)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(size);
    hub.requests.length = 0;
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    expect(hub.requests.find((r) => r.url.endsWith(file))?.range).toBe(`bytes=${partial}-`);
    expect((await readFile(join(dir, file))).equals(hub.files.get(file)!)).toBe(true);
    await expect(stat(part)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses content whose hash does not match, and keeps nothing of it', async () => {
    const cacheDir = await tempDir();
    hub.corrupt.add('onnx/text_model.onnx');
    try {
      await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).rejects.toMatchObject({
        code: 'MODEL_UNAVAILABLE',
        message: expect.stringContaining('Checksum mismatch for onnx/text_model.onnx'),
      });
    } finally {
      hub.corrupt.clear();
    }
    const dir = snapshotIn(cacheDir);
    const blob = join(hubRepoDir(REPO, cacheDir), 'blobs', sha256(hub.files.get('onnx/text_model.onnx')!));
    await expect(stat(join(dir, 'onnx/text_model.onnx'))).rejects.toThrow();
    await expect(stat(blob)).rejects.toThrow();
    await expect(stat(`${blob}.incomplete`)).rejects.toThrow();
    // nor does the revision point at the half snapshot
    await expect(stat(join(hubRepoDir(REPO, cacheDir), 'refs', 'main'))).rejects.toThrow();
  });

  it('names a missing variant and the available ones', async () => {
    await expect(fetchModel({ repo: REPO, cacheDir: await tempDir(), hubUrl: hub.url, variant: 'fp16' })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/onnx\/vision_model_fp16\.onnx.*available variants: fp32/),
    });
  });

  it('selects the variant graphs and their external-data files only', () => {
    const listing = [
      'config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/vision_model.onnx',
      'onnx/text_model.onnx',
      'onnx/vision_model_fp16.onnx',
      'onnx/text_model_fp16.onnx',
      'onnx/text_model_fp16.onnx_data',
      'README.md',
    ].map((path) => ({ path, size: 1 }));
    const picked = selectFiles(listing, 'fp16', 'cpu').map((f) => f.path);
    expect(picked).toContain('onnx/text_model_fp16.onnx_data');
    expect(picked).not.toContain('onnx/vision_model.onnx');
    expect(picked).not.toContain('README.md');
  });

  it('refuses a listing entry that would be written outside the model directory, before downloading anything', async () => {
    for (const evil of ['onnx/text_model.onnx_data/../../../escaped.txt', 'onnx/vision_model.onnx.data/../../../escaped.txt']) {
      // an external-data name the prefix match selects, pointing outside the cache folder
      hub.files.set(evil, Buffer.from('owned'));
      const cacheDir = await tempDir();
      try {
        await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).rejects.toMatchObject({
          code: 'MODEL_UNAVAILABLE',
          message: expect.stringMatching(/outside the model directory/),
        });
        expect(hub.requests.filter((r) => r.url.includes('/resolve/'))).toHaveLength(0);
        await expect(stat(join(cacheDir, 'escaped.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(stat(join(snapshotIn(cacheDir), '..', 'escaped.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(stat(join(hubRepoDir(REPO, cacheDir), 'escaped.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
      } finally {
        hub.files.delete(evil);
      }
    }
  });

  it('destinationInside: only plain relative paths below the model directory', () => {
    const dir = '/models/acme--x';
    expect(destinationInside(dir, 'onnx/text_model.onnx_data')).toBe('/models/acme--x/onnx/text_model.onnx_data');
    for (const bad of ['/etc/passwd', '../x', 'onnx/../../x', 'onnx/./x', 'onnx//x', 'C:\\x', 'onnx\\..\\..\\x', '']) {
      expect(() => destinationInside(dir, bad)).toThrow(/outside the model directory/);
    }
  });

  it('ensureModel: uses the cache, fetches when missing, and explains itself when offline', async () => {
    const cacheDir = await tempDir();
    const dir = await ensureModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    hub.requests.length = 0;
    expect(await ensureModel({ repo: REPO, cacheDir, hubUrl: hub.url })).toBe(dir);
    expect(hub.requests).toHaveLength(0);
    expect(dir).toBe(snapshotIn(cacheDir));
    const offline = ensureModel({ repo: REPO, cacheDir: await tempDir(), hubUrl: 'http://127.0.0.1:9' });
    await expect(offline).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/npm run model -- fetch acme\/tiny-siglip-ONNX.*offline demo/),
    });
  });
});

describe('the hub cache, shared with other Hugging Face tools', () => {
  it('a cache written by our fetch is found and loaded by repository id', async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    process.env.HF_HUB_CACHE = cacheDir;
    const dir = await fetchModel({ repo: REPO, hubUrl: hub.url }); // HF_HUB_CACHE, no cacheDir
    expect(dir).toBe(snapshotIn(cacheDir));
    expect(findCachedModel(REPO, { cacheDir: await tempDir() })).toBe(dir);
    expect(findCachedModel(REPO)).toBe(dir); // what the model service loads `model: "<repo>"` from
    expect((await loadModelDir(dir)).modelId).toBe(REPO);
    const printed: string[] = [];
    expect(await runModelCommand(['path', REPO], (l) => printed.push(l))).toBe(0);
    expect(printed).toEqual([dir]);
  });

  it('uses a snapshot laid out as huggingface_hub lays it out, without downloading', async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    const snapshot = await layOutAsHuggingfaceHub(source, cacheDir, REPO, COMMIT);
    expect(await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).toBe(snapshot);
    expect(resolves()).toHaveLength(0);
    hub.requests.length = 0;
    expect(await ensureModel({ repo: REPO, cacheDir, hubUrl: hub.url })).toBe(snapshot);
    expect(hub.requests).toHaveLength(0);
  });

  it('revisions: a tag gets its refs/ entry and snapshot; blobs are shared; a moved branch is followed', async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    const v2 = 'b'.repeat(40);
    hub.refs.set('v2', v2);
    await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    hub.requests.length = 0;
    const tagged = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, revision: 'v2' });
    expect(tagged).toBe(snapshotIn(cacheDir, v2));
    expect((await readFile(join(hubRepoDir(REPO, cacheDir), 'refs', 'v2'), 'utf8')).trim()).toBe(v2);
    expect(resolves()).toHaveLength(0); // same bytes, same blobs: linked, not downloaded again
    expect(findCachedModel(REPO, { revision: 'v2', hubCache: cacheDir })).toBe(tagged);
    // a commit hash is its own revision: no revision request, no refs/ entry
    hub.requests.length = 0;
    expect(await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, revision: v2 })).toBe(tagged);
    expect(hub.requests.some((r) => r.url.includes('/revision/'))).toBe(false);
    expect(await readdir(join(hubRepoDir(REPO, cacheDir), 'refs'))).toEqual(['main', 'v2']);
    // main moved on the hub: the next fetch follows it
    hub.refs.set('main', v2);
    expect(await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).toBe(tagged);
    expect((await readFile(join(hubRepoDir(REPO, cacheDir), 'refs', 'main'), 'utf8')).trim()).toBe(v2);
    await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, revision: 'nope' })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/acme\/tiny-siglip-ONNX@nope.*HTTP 404/),
    });
    await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, revision: '../../x' })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/Invalid revision/),
    });
  });

  it('HF_HUB_OFFLINE: the cached snapshot without a request, else an error naming the setting', async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    process.env.HF_HUB_OFFLINE = '1';
    hub.requests.length = 0;
    expect(await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url })).toBe(dir);
    await expect(fetchModel({ repo: REPO, cacheDir: await tempDir(), hubUrl: hub.url })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/HF_HUB_OFFLINE/),
    });
    await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, variant: 'fp16' })).rejects.toMatchObject({
      message: expect.stringMatching(/HF_HUB_OFFLINE.*fp16/),
    });
    expect(hub.requests).toHaveLength(0);
  });

  it('a listing without hashes (a mirror): blobs are named by the ETag of a HEAD, as huggingface_hub names them', async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    hub.hashless = true;
    try {
      const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
      expect(hub.requests.some((r) => r.method === 'HEAD')).toBe(true);
      for (const f of ['config.json', 'onnx/text_model.onnx']) {
        expect(await realpath(join(dir, f))).toBe(
          await realpath(join(hubRepoDir(REPO, cacheDir), 'blobs', blobName(f, hub.files.get(f)!))),
        );
      }
    } finally {
      hub.hashless = false;
    }
  });

  it("two fetches into one cache at once: each blob is downloaded once; a dead fetch's lock is taken over", async () => {
    const cacheDir = await tempDir('vps-hfcache-');
    const [a, b] = await Promise.all([
      fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url }),
      fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url }),
    ]);
    expect(a).toBe(b);
    const gets = resolves().map((r) => r.url);
    expect(new Set(gets).size).toBe(gets.length);
    expect((await readFile(join(a, 'onnx/vision_model.onnx'))).equals(hub.files.get('onnx/vision_model.onnx')!)).toBe(true);
    const locks = join(cacheDir, '.locks', 'models--acme--tiny-siglip-ONNX');
    expect(await readdir(locks)).toEqual([]); // released
    // a lock left by a process that no longer runs (a pid far above any live one) does not block
    const other = await tempDir('vps-hfcache-');
    const name = sha256(hub.files.get('onnx/text_model.onnx')!);
    await mkdir(join(other, '.locks', 'models--acme--tiny-siglip-ONNX'), { recursive: true });
    await writeFile(join(other, '.locks', 'models--acme--tiny-siglip-ONNX', `${name}.vps-lock`), `${hostname()} 2147483646`);
    expect(await fetchModel({ repo: REPO, cacheDir: other, hubUrl: hub.url })).toBe(snapshotIn(other));
  });

  it('still reads the former .cache/models layout, and never writes it', async () => {
    const legacyCacheDir = await tempDir();
    const legacy = modelCachePath(REPO, legacyCacheDir);
    await cp(source, legacy, { recursive: true });
    const cacheDir = await tempDir('vps-hfcache-');
    expect(await ensureModel({ repo: REPO, cacheDir, legacyCacheDir, hubUrl: hub.url })).toBe(legacy);
    expect(hub.requests).toHaveLength(0);
    expect(findCachedModel(REPO, { hubCache: cacheDir, cacheDir: legacyCacheDir })).toBe(legacy);
    // the hub cache wins once it has the model
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url });
    expect(await ensureModel({ repo: REPO, cacheDir, legacyCacheDir, hubUrl: hub.url })).toBe(dir);
    expect(await readdir(legacyCacheDir)).toEqual(['acme--tiny-siglip-ONNX']);
  });
});
