/**
 * Test support for the model fetch: a local server imitating the hub's endpoints, and a model laid out in
 * a hub cache the way Python's huggingface_hub lays it out.
 *
 *   GET /api/models/<repo>/revision/<rev>           → { id, sha } (the commit a branch or tag points to)
 *   GET /api/models/<repo>/tree/<rev>?recursive=true → [{type, path, size, oid, lfs?}]
 *   GET|HEAD /<repo>/resolve/<rev>/<path>           → bytes, Range support, ETag / X-Linked-ETag /
 *                                                      X-Linked-Size / X-Repo-Commit
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';

export const REPO = 'acme/tiny-siglip-ONNX';
export const COMMIT = 'c0ffee'.padEnd(40, '0');
export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const isLfs = (p: string) => p.endsWith('.onnx');
/** The name huggingface_hub gives a file's blob: its ETag, i.e. sha256 for LFS files, git blob sha1 otherwise. */
export const blobName = (path: string, b: Buffer) => (isLfs(path) ? sha256(b) : gitSha1(b));

export interface Hub {
  url: string;
  server: Server;
  requests: { method: string; url: string; range?: string; auth?: string }[];
  files: Map<string, Buffer>;
  /** revision (branch or tag) → commit; a commit hash is its own revision. */
  refs: Map<string, string>;
  /** path → number of bytes after which the connection is cut (once). */
  cutAfter: Map<string, number>;
  corrupt: Set<string>;
  /** A mirror whose listing carries sizes but no hashes (the fetch must name blobs by a HEAD's ETag). */
  hashless: boolean;
}

export async function filesOf(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesOf(dir, p)));
    else out.push(p);
  }
  return out;
}

/** Serves `modelDir` as repository `repo` at COMMIT (main). */
export async function startHub(modelDir: string, repo: string = REPO): Promise<Hub> {
  const files = new Map<string, Buffer>();
  for (const p of await filesOf(modelDir)) files.set(p, await readFile(join(modelDir, p)));
  const hub: Hub = {
    url: '',
    server: createServer(),
    requests: [],
    files,
    refs: new Map([['main', COMMIT]]),
    cutAfter: new Map(),
    corrupt: new Set(),
    hashless: false,
  };
  const commitOf = (rev: string) => (/^[0-9a-f]{40}$/.test(rev) ? rev : hub.refs.get(rev));
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x');
    hub.requests.push({ method: req.method ?? 'GET', url: u.pathname, range: req.headers.range, auth: req.headers.authorization });
    const info = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(u.pathname);
    if (info) {
      if (info[1] !== repo) return res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
      const sha = commitOf(decodeURIComponent(info[2]!));
      if (!sha) return res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end('{"error":"Invalid rev id"}');
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ _id: 'x', id: repo, sha }));
    }
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(u.pathname);
    if (tree) {
      if (tree[1] !== repo) return res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('{"error":"Repository not found"}');
      if (!commitOf(decodeURIComponent(tree[2]!))) return res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end('{}');
      const list = [...files].map(([path, b]) =>
        hub.hashless
          ? { type: 'file', path, size: b.length }
          : {
              type: 'file',
              path,
              size: isLfs(path) ? 135 : b.length,
              oid: gitSha1(Buffer.from(`pointer ${path}`)),
              ...(isLfs(path) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 135 } } : { oid: gitSha1(b) }),
            },
      );
      list.push({ type: 'directory', path: 'onnx', size: 0, oid: 'x' });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(list));
    }
    const m = new RegExp(`^/${repo}/resolve/([^/]+)/(.+)$`).exec(u.pathname);
    const path = m ? decodeURIComponent(m[2]!) : '';
    const body = m ? files.get(path) : undefined;
    const commit = m ? commitOf(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !body || !commit) return res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end('not found');
    let data = hub.corrupt.has(path) ? Buffer.from(body.map((x) => x ^ 1)) : body;
    const etag = `"${blobName(path, body)}"`;
    const headers: Record<string, string | number> = {
      etag,
      'accept-ranges': 'bytes',
      'x-linked-size': body.length,
      'x-repo-commit': commit,
    };
    if (isLfs(path)) headers['x-linked-etag'] = etag;
    if (req.method === 'HEAD') return res.writeHead(200, { ...headers, 'content-length': body.length }).end();
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
  hub.server.on('request', handler);
  await new Promise<void>((r) => hub.server.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${(hub.server.address() as AddressInfo).port}`;
  return hub;
}

/**
 * Lays a model directory out in a hub cache as huggingface_hub's snapshot_download does: blobs named by
 * their ETag, snapshots/<commit>/ of relative symlinks, refs/<revision> holding the commit.
 */
export async function layOutAsHuggingfaceHub(
  modelDir: string,
  cache: string,
  repo: string,
  commit: string,
  revision = 'main',
): Promise<string> {
  const repoDir = join(cache, `models--${repo.replace('/', '--')}`);
  const snapshot = join(repoDir, 'snapshots', commit);
  for (const f of await filesOf(modelDir)) {
    const bytes = await readFile(join(modelDir, f));
    const blob = join(repoDir, 'blobs', blobName(f, bytes));
    await mkdir(dirname(blob), { recursive: true });
    await writeFile(blob, bytes);
    const link = join(snapshot, f);
    await mkdir(dirname(link), { recursive: true });
    await symlink(relative(dirname(link), blob), link);
  }
  await mkdir(join(repoDir, 'refs'), { recursive: true });
  await writeFile(join(repoDir, 'refs', revision), commit);
  return snapshot;
}
