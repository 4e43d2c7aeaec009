import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { destinationInside, ensureModel, fetchModel, selectFiles } from '../../../src/embedding/hub.js';
import { modelCachePath } from '../../../src/embedding/hub-paths.js';
import { cleanupDirs, tempDir, tinyModel } from './helpers.js';

/**
 * A local server imitating the hub's file endpoints:
 *   GET /api/models/<repo>/tree/<rev>?recursive=true  → [{type, path, size, oid, lfs?}]
 *   GET /<repo>/resolve/<rev>/<path>                 → bytes, Range support, ETag / X-Linked-ETag / X-Linked-Size
 */
interface Hub {
  url: string;
  server: Server;
  requests: { url: string; range?: string; auth?: string }[];
  files: Map<string, Buffer>;
  /** path → number of bytes after which the connection is cut (once). */
  cutAfter: Map<string, number>;
  corrupt: Set<string>;
}

const REPO = 'acme/tiny-siglip-ONNX';
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const isLfs = (p: string) => p.endsWith('.onnx');

async function startHub(modelDir: string): Promise<Hub> {
  const files = new Map<string, Buffer>();
  const walk = async (rel: string) => {
    for (const e of await readdir(join(modelDir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p);
      else files.set(p, await readFile(join(modelDir, p)));
    }
  };
  await walk('');
  const hub: Hub = { url: '', server: null as never, requests: [], files, cutAfter: new Map(), corrupt: new Set() };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x');
    hub.requests.push({ url: u.pathname, range: req.headers.range, auth: req.headers.authorization });
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(u.pathname);
    if (tree) {
      if (tree[1] !== REPO) return res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
      const list = [...files].map(([path, b]) => ({
        type: 'file',
        path,
        size: isLfs(path) ? 135 : b.length,
        oid: gitSha1(Buffer.from(`pointer ${path}`)),
        ...(isLfs(path) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 135 } } : { oid: gitSha1(b) }),
      }));
      list.push({ type: 'directory', path: 'onnx', size: 0, oid: 'x' });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(list));
    }
    const m = new RegExp(`^/${REPO}/resolve/([^/]+)/(.+)$`).exec(u.pathname);
    const body = m ? files.get(decodeURIComponent(m[2]!)) : undefined;
    if (!m || !body) return res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end('not found');
    const path = decodeURIComponent(m[2]!);
    let data = hub.corrupt.has(path) ? Buffer.from(body.map((x) => x ^ 1)) : body;
    const etag = `"${isLfs(path) ? sha256(body) : gitSha1(body)}"`;
    const headers: Record<string, string | number> = { etag, 'accept-ranges': 'bytes', 'x-linked-size': body.length };
    if (isLfs(path)) headers['x-linked-etag'] = etag;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      data = data.subarray(start);
      status = 206;
    }
    const cut = hub.cutAfter.get(path);
    if (cut !== undefined && !range) {
      hub.cutAfter.delete(path);
      res.writeHead(200, { ...headers, 'content-length': data.length });
      res.write(data.subarray(0, cut), () => res.destroy());
      return;
    }
    res.writeHead(status, { ...headers, 'content-length': data.length });
    res.end(data);
  };
  hub.server = createServer(handler);
  await new Promise<void>((r) => hub.server.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${(hub.server.address() as AddressInfo).port}`;
  return hub;
}

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

describe('model fetch from a hub-compatible server', () => {
  it('downloads the model directory, verifies it, and sends the token', async () => {
    const cacheDir = await tempDir();
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, token: 'hf_test', quiet: true });
    expect(dir).toBe(modelCachePath(REPO, cacheDir));
    for (const f of ['config.json', 'tokenizer.json', 'onnx/vision_model.onnx', 'onnx/text_model.onnx']) {
      expect((await readFile(join(dir, f))).equals(await readFile(join(source, f)))).toBe(true);
    }
    expect(hub.requests.every((r) => r.auth === 'Bearer hf_test')).toBe(true);
    const manifest = JSON.parse(await readFile(join(dir, '.source.json'), 'utf8'));
    expect(manifest.repo).toBe(REPO);
    // a second fetch is a no-op apart from the listing
    hub.requests.length = 0;
    await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true });
    expect(hub.requests.filter((r) => r.url.includes('/resolve/'))).toHaveLength(0);
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
    await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true })).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/interrupted.*run the same command again/),
    });
    const part = join(modelCachePath(REPO, cacheDir), `${file}.part`);
    const partial = (await stat(part)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(size);
    hub.requests.length = 0;
    const dir = await fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true });
    expect(hub.requests.find((r) => r.url.endsWith(file))?.range).toBe(`bytes=${partial}-`);
    expect((await readFile(join(dir, file))).equals(hub.files.get(file)!)).toBe(true);
  });

  it('refuses content whose hash does not match, and keeps nothing of it', async () => {
    const cacheDir = await tempDir();
    hub.corrupt.add('onnx/text_model.onnx');
    try {
      await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true })).rejects.toMatchObject({
        code: 'MODEL_UNAVAILABLE',
        message: expect.stringContaining('Checksum mismatch for onnx/text_model.onnx'),
      });
    } finally {
      hub.corrupt.clear();
    }
    const dir = modelCachePath(REPO, cacheDir);
    await expect(stat(join(dir, 'onnx/text_model.onnx'))).rejects.toThrow();
    await expect(stat(join(dir, 'onnx/text_model.onnx.part'))).rejects.toThrow();
  });

  it('names a missing variant and the available ones', async () => {
    await expect(
      fetchModel({ repo: REPO, cacheDir: await tempDir(), hubUrl: hub.url, variant: 'fp16', quiet: true }),
    ).rejects.toMatchObject({
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
    const picked = selectFiles(listing, 'fp16').map((f) => f.path);
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
        await expect(fetchModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true })).rejects.toMatchObject({
          code: 'MODEL_UNAVAILABLE',
          message: expect.stringMatching(/outside the model directory/),
        });
        expect(hub.requests.filter((r) => r.url.includes('/resolve/'))).toHaveLength(0);
        await expect(stat(join(cacheDir, 'escaped.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(stat(join(modelCachePath(REPO, cacheDir), '..', 'escaped.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
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
    const dir = await ensureModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true });
    hub.requests.length = 0;
    expect(await ensureModel({ repo: REPO, cacheDir, hubUrl: hub.url, quiet: true })).toBe(dir);
    expect(hub.requests).toHaveLength(0);
    const offline = ensureModel({ repo: REPO, cacheDir: await tempDir(), hubUrl: 'http://127.0.0.1:9', quiet: true });
    await expect(offline).rejects.toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      message: expect.stringMatching(/npm run model -- fetch acme\/tiny-siglip-ONNX.*offline demo/),
    });
  });
});
