/**
 * Getting a model: download the files of a model repository in the hub's ONNX-export layout from the
 * Hugging Face Hub (or any server with the same endpoints: HF_ENDPOINT) into the standard Hugging Face hub
 * cache, laid out exactly as Python's huggingface_hub and @huggingface/hub lay it out, so every Hugging
 * Face tool on the machine shares what we download and we share what they downloaded:
 *
 *   <HF_HUB_CACHE>/models--<owner>--<name>/
 *     blobs/<etag>                       the file's bytes, named by its hash: sha256 for LFS files (the
 *                                        hub's X-Linked-Etag), git blob sha1 for the others (its ETag)
 *     snapshots/<commit>/<path>          relative symlinks to ../../blobs/<etag> (one more ../ per folder)
 *     refs/<revision>                    the commit a branch or tag pointed to when it was last fetched
 *
 * - the revision is resolved to its commit first (/api/models/<repo>/revision/<rev>, as snapshot_download
 *   does), and the file list (sizes, git/LFS hashes) is read at that commit, so a branch that moves
 *   during a download cannot mix two commits;
 * - only the files of the variant(s) the engine will open are downloaded (selectFiles);
 * - each blob is streamed to `blobs/<etag>.incomplete` (huggingface_hub's name, so either tool resumes
 *   what the other left) and resumed with an HTTP Range request after an interruption;
 * - size and hash are verified (listing, ETag) before the blob is renamed into place: a blob, once there,
 *   is whole; a mismatch deletes the partial file;
 * - refs/<revision> is written last, after every file of the snapshot is linked, so a reader that
 *   follows refs/ never sees half a fetch (huggingface_hub writes it first; the resulting layout is the same);
 * - one writer per blob (withBlobLock), so two fetches on one cache download each file once;
 * - HF_HUB_OFFLINE: no request at all; the snapshot the cache holds is used, or the fetch says why not;
 * - HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) sent as a bearer token; progress on stderr.
 *
 * Caches without symlinks (huggingface_hub's degraded mode on Windows without developer mode) are not
 * written: the service runs on Linux and macOS.
 *
 * Why the download is our own and not @huggingface/hub's downloadFileToCacheDir / snapshotDownload (its
 * listFiles and the cache layout are the library's, and the paths match its getRepoFolderName): in the
 * pinned version (2.17.5) those name the snapshot after each file's last commit rather than the commit
 * the revision resolved to (one model's files then land in several snapshots, and refs/ is never
 * written), download whole files without resuming a `.incomplete` after an interruption, verify no hash,
 * report no progress, and download every file of the repository (gigabytes of variants the engine never
 * opens) where snapshotDownload is used.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, win32 } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listFiles } from '@huggingface/hub';
import { hubSettings } from '../config.js';
import { AppError, ErrorCode } from '../errors.js';
import { withBlobLock } from './lock.js';
import { DEFAULT_MODEL_REPO, hubRepoDir, hubSnapshotDir } from './paths.js';
import { hasVariantFiles, selectFiles, type ExecutionProvider, type RemoteFile } from './variants.js';

/** One report per chunk received: the file, and bytes done of the file and of the whole fetch. */
export interface FetchProgress {
  file: string;
  done: number;
  total: number;
  fileDone: number;
  fileTotal: number;
}

export interface FetchOptions {
  repo?: string;
  variant?: string;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** The hub cache to write and read (default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** The project's former cache, still read by ensureModel (default .cache/models). */
  legacyCacheDir?: string;
  /** The execution provider the engine is expected to initialise: which files `auto` fetches (default cpu). */
  provider?: ExecutionProvider;
  /** Hub base URL; default HF_ENDPOINT (config.ts), else the public hub. */
  hubUrl?: string;
  /** Default HF_TOKEN / HUGGING_FACE_HUB_TOKEN (config.ts). */
  token?: string;
  fetch?: typeof fetch;
  /** Progress sink (the CLI and the service's first start draw a progress bar); none by default. */
  onProgress?: (p: FetchProgress) => void;
}

const fail = (message: string, details?: Record<string, unknown>, cause?: unknown) =>
  new AppError(ErrorCode.MODEL_UNAVAILABLE, message, details, cause === undefined ? undefined : { cause });

/**
 * Where a listed file goes inside the model directory. A listing comes from a server we do not control
 * (HF_ENDPOINT can be any mirror), and the external-data match in selectFiles is a prefix, so a name like
 * `onnx/text_model.onnx_data/../../../x` or an absolute path must be refused before anything is written.
 */
export function destinationInside(dir: string, file: string): string {
  const refuse = () => fail(`The hub listing names ${JSON.stringify(file)}, which is outside the model directory; refused`, { file });
  if (!file || isAbsolute(file) || win32.isAbsolute(file) || file.includes('\\') || file.includes('\0')) throw refuse();
  if (file.split('/').some((part) => part === '..' || part === '.' || part === '')) throw refuse();
  const dest = resolve(dir, file);
  const rel = relative(resolve(dir), dest);
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) throw refuse();
  return dest;
}

async function hashFile(path: string, algo: 'sha256' | 'gitsha1', size: number): Promise<string> {
  const h = createHash(algo === 'sha256' ? 'sha256' : 'sha1');
  if (algo === 'gitsha1') h.update(`blob ${size}\0`);
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

const etagHash = (etag: string | null): string | undefined => {
  const v = etag?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  return v && /^([0-9a-f]{40}|[0-9a-f]{64})$/.test(v) ? v : undefined;
};

const COMMIT = /^[0-9a-f]{40}$/;

/** A revision names a refs/ file: branch and tag names (`main`, `v1`, `refs/pr/1`), never a way out of it. */
function checkRevision(revision: string): string {
  const bad =
    !revision ||
    revision.startsWith('/') ||
    revision.includes('\\') ||
    revision.includes('\0') ||
    revision.split('/').some((part) => part === '' || part === '.' || part === '..');
  if (bad) throw fail(`Invalid revision ${JSON.stringify(revision)}`, { revision });
  return revision;
}

interface HubContext {
  repo: string;
  hubUrl: string;
  headers: Record<string, string>;
  fetch: typeof fetch;
}

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The commit a branch or tag points to now (what huggingface_hub's snapshot_download reads from repo_info). */
async function resolveCommit(ctx: HubContext, revision: string): Promise<string> {
  if (COMMIT.test(revision)) return revision;
  const url = `${ctx.hubUrl}/api/models/${ctx.repo}/revision/${encodeURIComponent(revision)}?expand=sha`;
  let res: Response;
  try {
    res = await ctx.fetch(url, { headers: ctx.headers });
  } catch (err) {
    throw fail(`Could not reach ${ctx.hubUrl} for ${ctx.repo}@${revision}: ${reason(err)}`, { repo: ctx.repo, hubUrl: ctx.hubUrl }, err);
  }
  if (!res.ok) {
    throw fail(`Could not resolve ${ctx.repo}@${revision} on ${ctx.hubUrl}: HTTP ${res.status}`, {
      repo: ctx.repo,
      revision,
      status: res.status,
    });
  }
  const body = (await res.json().catch(() => null)) as { sha?: unknown } | null;
  const sha = body?.sha;
  if (typeof sha !== 'string' || !COMMIT.test(sha)) {
    throw fail(`${ctx.hubUrl} answered no commit hash for ${ctx.repo}@${revision}`, { repo: ctx.repo, revision });
  }
  return sha;
}

/**
 * The ETag of a file from a HEAD request, for listings that carry no hash (a mirror): the hub's own
 * answer, not the CDN's, so redirects are followed only when relative (a renamed repository), as
 * huggingface_hub's get_hf_file_metadata does.
 */
async function headEtag(ctx: HubContext, url: string): Promise<string | undefined> {
  let target = url;
  for (let hop = 0; hop < 5; hop++) {
    const res = await ctx.fetch(target, { method: 'HEAD', headers: ctx.headers, redirect: 'manual' });
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location?.startsWith('/')) {
      target = new URL(location, target).href;
      continue;
    }
    return etagHash(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
  }
  return undefined;
}

async function sizeOf(path: string): Promise<number | null> {
  return (await stat(path).catch(() => null))?.size ?? null; // follows a snapshot's symlink to its blob
}

/** snapshots/<commit>/<path> → the blob, as a relative symlink (the cache folder can move), as huggingface_hub links it. */
async function linkPointer(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true }); // a broken link or a stale pointer of a failed fetch
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (err) {
    // another fetch linked the same file in between: fine when it points at the same blob
    const same = await stat(pointer).then(
      async (s) => s.ino === (await stat(blob)).ino,
      () => false,
    );
    if (!same) throw err;
  }
}

/** refs/<revision> := commit, atomically (a reader sees the old commit or the new one). */
async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  const ref = join(repoDir, 'refs', ...revision.split('/'));
  const current = await readFile(ref, 'utf8').catch(() => null);
  if (current?.trim() === commit) return; // unchanged: a read-only cache stays usable
  await mkdir(dirname(ref), { recursive: true });
  const tmp = `${ref}.${process.pid}.tmp`;
  await writeFile(tmp, commit);
  await rename(tmp, ref);
}

/**
 * Download (or complete) the model files of `repo` at a revision into the hub cache; returns the
 * snapshot directory (snapshots/<commit>), which loadModelDir opens as a model directory.
 */
export async function fetchModel(opts: FetchOptions = {}): Promise<string> {
  const repo = opts.repo ?? DEFAULT_MODEL_REPO;
  const env = hubSettings(); // HF_ENDPOINT / HF_TOKEN / HF_HUB_CACHE / HF_HUB_OFFLINE, read where every setting is read
  const hubUrl = (opts.hubUrl ?? env.hubUrl).replace(/\/+$/, '');
  const token = opts.token ?? env.token;
  const revision = checkRevision(opts.revision ?? 'main');
  const cache = opts.cacheDir ? resolve(opts.cacheDir) : env.cacheDir;
  const provider = opts.provider ?? 'cpu';
  const repoDir = hubRepoDir(repo, cache);
  const ctx: HubContext = { repo, hubUrl, headers: token ? { Authorization: `Bearer ${token}` } : {}, fetch: opts.fetch ?? fetch };

  if (env.offline) {
    // huggingface_hub's offline snapshot_download: the snapshot the cache resolves the revision to, or an error
    const snapshot = hubSnapshotDir(repo, revision, cache);
    const usable = snapshot ? await hasVariantFiles(snapshot, opts.variant, provider) : false;
    if (snapshot && usable) return snapshot;
    throw fail(
      `HF_HUB_OFFLINE is set and the hub cache ${cache} holds no ${snapshot ? 'complete ' : ''}snapshot of ${repo}@${revision}` +
        (opts.variant && opts.variant !== 'auto' ? ` with the ${opts.variant} files` : ''),
      { repo, revision, cache },
    );
  }

  const commit = await resolveCommit(ctx, revision);
  let listing: RemoteFile[];
  try {
    listing = [];
    // listed at the commit, not the branch: the files and the snapshot they go into cannot disagree
    for await (const f of listFiles({ repo, revision: commit, recursive: true, hubUrl, accessToken: token, fetch: ctx.fetch })) {
      if (f.type !== 'file') continue;
      listing.push({
        path: f.path,
        size: f.lfs?.size ?? f.size,
        hash: f.lfs?.oid ? { algo: 'sha256', hex: f.lfs.oid } : f.oid ? { algo: 'gitsha1', hex: f.oid } : undefined,
      });
    }
  } catch (err) {
    throw fail(`Could not list ${repo} on ${hubUrl}: ${reason(err)}`, { repo, hubUrl }, err);
  }
  const files = selectFiles(listing, opts.variant, provider);
  const snapshot = join(repoDir, 'snapshots', commit);
  const pointers = new Map(files.map((f) => [f.path, destinationInside(snapshot, f.path)])); // all checked before any download
  const blobs = join(repoDir, 'blobs');
  const locks = join(cache, '.locks', basename(repoDir));
  await mkdir(blobs, { recursive: true });
  const total = files.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const progress = opts.onProgress ?? (() => {});

  for (const f of files) {
    const pointer = pointers.get(f.path)!;
    if ((await sizeOf(pointer)) === f.size) {
      done += f.size; // in this snapshot already (ours, or another tool's)
      progress({ file: f.path, done, total, fileDone: f.size, fileTotal: f.size });
      continue;
    }
    const url = `${hubUrl}/${repo}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
    const name = f.hash?.hex.toLowerCase() ?? (await headEtag(ctx, url));
    if (!name || !/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(name)) {
      throw fail(`The hub gives no hash for ${repo}/${f.path}, so it has no name in the hub cache`, { repo, file: f.path });
    }
    const blob = join(blobs, name);
    if ((await sizeOf(blob)) !== f.size) {
      // not in the cache under any snapshot: download it (a blob another snapshot shares is linked as is)
      const base = done;
      await withBlobLock(locks, name, async () => {
        if ((await sizeOf(blob)) === f.size) return; // the fetch we waited for brought it
        await downloadBlob(ctx, { ...f, url, blob, commit }, (fileDone) =>
          progress({ file: f.path, done: base + fileDone, total, fileDone, fileTotal: f.size }),
        );
      });
    }
    await linkPointer(blob, pointer);
    done += f.size;
  }
  if (!(await hasVariantFiles(snapshot, opts.variant, provider))) {
    throw fail(`The snapshot ${snapshot} lacks files of the ${opts.variant ?? 'fp32'} variant after the fetch`, { repo, snapshot });
  }
  if (revision !== commit) await writeRef(repoDir, revision, commit); // last: refs/ only ever names a whole snapshot
  progress({ file: 'done', done: total, total, fileDone: 0, fileTotal: 0 });
  return snapshot;
}

/** One blob: `<blob>.incomplete`, resumed with Range, verified, then renamed into place. */
async function downloadBlob(
  ctx: HubContext,
  f: RemoteFile & { url: string; blob: string; commit: string },
  onBytes: (fileDone: number) => void,
): Promise<void> {
  const part = `${f.blob}.incomplete`;
  let have = (await sizeOf(part)) ?? 0;
  if (have > f.size) {
    await rm(part, { force: true });
    have = 0;
  }
  let etag: string | undefined;
  if (have < f.size || f.size === 0) {
    let res: Response;
    try {
      res = await ctx.fetch(f.url, { headers: { ...ctx.headers, ...(have > 0 ? { Range: `bytes=${have}-` } : {}) }, redirect: 'follow' });
    } catch (err) {
      throw fail(`Download of ${ctx.repo}/${f.path} failed: ${reason(err)}`, { repo: ctx.repo, file: f.path }, err);
    }
    if (!res.ok || !res.body) {
      throw fail(`Download of ${ctx.repo}/${f.path} failed: HTTP ${res.status}`, { repo: ctx.repo, file: f.path, status: res.status });
    }
    const served = res.headers.get('x-repo-commit');
    if (served && served !== f.commit) {
      await res.body.cancel();
      throw fail(`The hub served ${f.path} of commit ${served}, not ${f.commit}`, { repo: ctx.repo, file: f.path });
    }
    etag = etagHash(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    const append = have > 0 && res.status === 206;
    if (!append) have = 0;
    let fileDone = have;
    onBytes(fileDone);
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      fileDone += chunk.length;
      onBytes(fileDone);
    });
    try {
      await pipeline(body, createWriteStream(part, { flags: append ? 'a' : 'w' }));
    } catch (err) {
      throw fail(
        `Download of ${ctx.repo}/${f.path} was interrupted at ${fileDone}/${f.size} bytes; run the same command again to resume`,
        { repo: ctx.repo, file: f.path },
        err,
      );
    }
  }
  const got = (await sizeOf(part)) ?? 0;
  if (got !== f.size) {
    await rm(part, { force: true });
    throw fail(`Size mismatch for ${f.path}: got ${got} bytes, the hub lists ${f.size}`, { file: f.path });
  }
  // The blob's name is its hash: sha256 (LFS) or the git blob sha1, as the listing (or a HEAD's ETag) gave it.
  const expected = basename(f.blob);
  const algo = f.hash?.algo ?? (expected.length === 64 ? 'sha256' : 'gitsha1');
  const actual = await hashFile(part, algo, f.size);
  if (actual !== expected || (etag && f.hash && etag !== expected && etag.length === expected.length)) {
    await rm(part, { force: true });
    throw fail(`Checksum mismatch for ${f.path}: expected ${expected}, got ${actual}; the partial file was removed`, { file: f.path });
  }
  await rename(part, f.blob); // atomic: a blob in the cache is always whole
}
