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
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { hostname } from 'node:os';
import { mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, win32 } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listFiles } from '@huggingface/hub';
import { ProgressBar } from '../cli/progress.js';
import { hubSettings } from '../config.js';
import { AppError, ErrorCode } from '../errors.js';
import {
  DEFAULT_MODEL_REPO,
  defaultModelCacheDir,
  hubCacheDir,
  hubOffline,
  hubRepoDir,
  hubSnapshotDir,
  modelCachePath,
} from './hub-paths.js';
import { expectedProvider, loadModelDir, onnxFileName, pickAutoVariant } from './model-dir.js';
import type { ProviderName } from './providers.js';

export const REQUIRED_JSON = ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json'];

export interface FetchOptions {
  repo?: string;
  variant?: string;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** The hub cache to write and read (default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** The project's former cache, still read by ensureModel (default .cache/models). */
  legacyCacheDir?: string;
  /** Hub base URL; default HF_ENDPOINT (config.ts), else the public hub. */
  hubUrl?: string;
  /** Default HF_TOKEN / HUGGING_FACE_HUB_TOKEN (config.ts). */
  token?: string;
  fetch?: typeof fetch;
  /** Progress sink; default: the CLI's progress bar on stderr (redrawn on a TTY, else a line every few seconds). */
  onProgress?: (p: { file: string; done: number; total: number; fileDone: number; fileTotal: number }) => void;
  quiet?: boolean;
}

interface RemoteFile {
  path: string;
  size: number;
  /** sha256 (LFS) or git blob sha1 (regular files). */
  hash?: { algo: 'sha256' | 'gitsha1'; hex: string };
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

/** Which files of a repo listing make up the model directory for a variant. */
export function selectFiles(listing: RemoteFile[], variantArg?: string, provider: ProviderName = 'auto'): RemoteFile[] {
  const byPath = new Map(listing.map((f) => [f.path, f]));
  // 'auto': only the files of the variant the engine will open for the expected provider (the real text
  // tower alone is ~1.1 GB in fp32), i.e. the int8 files on CPU when the repository has them
  const variant =
    variantArg === 'auto'
      ? pickAutoVariant(
          expectedProvider(provider),
          (v) => byPath.has(onnxFileName('vision_model', v)) && byPath.has(onnxFileName('text_model', v)),
        )
      : variantArg;
  const wanted = [...REQUIRED_JSON, onnxFileName('vision_model', variant), onnxFileName('text_model', variant)];
  const missing = wanted.filter((p) => !byPath.has(p));
  if (missing.length) {
    const variants = [
      ...new Set(
        listing
          .map((f) => /^onnx\/vision_model(?:_(\w+))?\.onnx$/.exec(f.path))
          .filter((m): m is RegExpExecArray => !!m)
          .map((m) => m[1] ?? 'fp32'),
      ),
    ];
    throw fail(`Repository lacks ${missing.join(', ')}${variants.length ? ` (available variants: ${variants.join(', ')})` : ''}`, {
      missing,
    });
  }
  const out = wanted.map((p) => byPath.get(p)!);
  // external-data files of the chosen graphs (large exports), e.g. onnx/text_model.onnx_data
  for (const f of listing) {
    for (const g of wanted.slice(REQUIRED_JSON.length)) {
      if (f.path.startsWith(`${g}_data`) || f.path.startsWith(`${g}.data`)) out.push(f);
    }
  }
  return out;
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

/** The default progress sink: the CLI's progress bar, in MiB, on stderr. */
function progressPrinter(total: number, quiet?: boolean) {
  if (quiet) return () => {};
  const bar = new ProgressBar('model fetch', { unit: 'MiB', scale: 1048576 });
  return (p: { file: string; done: number }) => {
    const finished = p.done >= total;
    bar.update(p.done, total, p.file.slice(-40), finished);
    if (finished) bar.done();
  };
}

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the process a lock file names still runs (same host only; another host's lock is trusted). */
function lockHolderAlive(content: string): boolean {
  const [host, pidText] = content.trim().split(' ');
  const pid = Number(pidText);
  if (!host) return false; // an empty file: a writer that died between create and write
  if (host !== hostname()) return true; // another machine's process cannot be checked from here
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * One writer per blob: two fetches of the same file (two replicas starting on one shared cache) must not
 * append to the same `.incomplete`. An exclusive-create file beside huggingface_hub's `.locks/` entries
 * (its `filelock` uses flock(2), which Node cannot take; its lock files stay behind, so sharing their
 * names would block on them), holding host and pid so that the lock of a killed process is taken over.
 */
async function withBlobLock<T>(lockDir: string, name: string, work: () => Promise<T>, waitMs = 30 * 60_000): Promise<T> {
  await mkdir(lockDir, { recursive: true });
  const lock = join(lockDir, `${name}.vps-lock`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lock, `${hostname()} ${process.pid}`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readFile(lock, 'utf8').catch(() => null);
      if (holder !== null && !lockHolderAlive(holder)) {
        await rm(lock, { force: true }); // its process is gone: its .incomplete is resumed below
        continue;
      }
      if (Date.now() > deadline) {
        throw fail(`Another fetch holds ${lock} (${holder ?? '?'}); remove it if no fetch is running`, { lock });
      }
      await sleep(250);
    }
  }
  try {
    return await work();
  } finally {
    await rm(lock, { force: true });
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
  const env = hubSettings(); // HF_ENDPOINT / HF_TOKEN, read where every setting is read
  const hubUrl = (opts.hubUrl ?? env.hubUrl).replace(/\/+$/, '');
  const token = opts.token ?? env.token;
  const revision = checkRevision(opts.revision ?? 'main');
  const cache = opts.cacheDir ? resolve(opts.cacheDir) : hubCacheDir();
  const repoDir = hubRepoDir(repo, cache);
  const ctx: HubContext = { repo, hubUrl, headers: token ? { Authorization: `Bearer ${token}` } : {}, fetch: opts.fetch ?? fetch };

  if (hubOffline()) {
    // huggingface_hub's offline snapshot_download: the snapshot the cache resolves the revision to, or an error
    const snapshot = hubSnapshotDir(repo, revision, cache);
    const usable = snapshot
      ? await loadModelDir(snapshot, opts.variant).then(
          () => true,
          () => false,
        )
      : false;
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
  const files = selectFiles(listing, opts.variant);
  const snapshot = join(repoDir, 'snapshots', commit);
  const pointers = new Map(files.map((f) => [f.path, destinationInside(snapshot, f.path)])); // all checked before any download
  const blobs = join(repoDir, 'blobs');
  const locks = join(cache, '.locks', basename(repoDir));
  await mkdir(blobs, { recursive: true });
  const total = files.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const progress = opts.onProgress ?? progressPrinter(total, opts.quiet);

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
  await loadModelDir(snapshot, opts.variant); // the result must be a loadable model directory
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

/**
 * For `npm start`: the model if this machine has it, else fetch it into the hub cache (with progress).
 * Looked up in this order: `modelDir` when given; the hub cache's snapshot of the revision (ours, or one
 * another Hugging Face tool downloaded); the project's former cache (.cache/models/<owner>--<name>,
 * still read, never written). Offline, one clear MODEL_UNAVAILABLE that names the fetch command and
 * the offline demo.
 */
export async function ensureModel(
  opts: FetchOptions & { modelDir?: string },
  log?: { info: (...args: unknown[]) => void; warn: (...args: unknown[]) => void },
): Promise<string> {
  const repo = opts.repo ?? DEFAULT_MODEL_REPO;
  const opens = (dir: string) =>
    loadModelDir(dir, opts.variant).then(
      () => true,
      () => false, // absent, or lacks this variant's files: the next place, or a fetch
    );
  if (opts.modelDir) {
    if (await opens(opts.modelDir)) return opts.modelDir;
    // an explicit directory that is not a model: don't guess a repository; its own error says why
    if (!opts.repo) await loadModelDir(opts.modelDir, opts.variant);
  }
  const cache = opts.cacheDir ? resolve(opts.cacheDir) : hubCacheDir();
  const snapshot = hubSnapshotDir(repo, opts.revision ?? 'main', cache);
  if (snapshot && (await opens(snapshot))) return snapshot;
  if (!opts.revision || opts.revision === 'main') {
    // the project's former layout, written by earlier versions of `vps model fetch` (always main)
    const legacy = modelCachePath(repo, opts.legacyCacheDir ?? defaultModelCacheDir());
    if (await opens(legacy)) return legacy;
  }
  const where = hubRepoDir(repo, cache);
  if (hubOffline()) {
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
