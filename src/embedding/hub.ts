/**
 * Getting a model: download a model directory in the hub's ONNX-export layout from the Hugging Face Hub
 * (or any server with the same endpoints: HF_ENDPOINT), into <cacheDir>/<owner>--<name>.
 *
 * - file list (sizes, git/LFS hashes) from the hub API through @huggingface/hub's listFiles;
 * - each file streamed to `<file>.part`, resumed with an HTTP Range request after an interruption;
 * - size and content hash verified against the listing and the ETag (sha256 for LFS files, git blob sha1
 *   for small files) before the file is renamed into place; a mismatch deletes the partial file;
 * - HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) sent as a bearer token; progress on stderr.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, win32 } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listFiles } from '@huggingface/hub';
import { ProgressBar } from '../cli/progress.js';
import { hubSettings } from '../config.js';
import { AppError, ErrorCode } from '../errors.js';
import { DEFAULT_MODEL_REPO, defaultModelCacheDir, hubOffline, hubSnapshotDir, modelCachePath } from './hub-paths.js';
import { expectedProvider, loadModelDir, onnxFileName, pickAutoVariant } from './model-dir.js';
import type { ProviderName } from './providers.js';

export const REQUIRED_JSON = ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json'];

export interface FetchOptions {
  repo?: string;
  variant?: string;
  revision?: string;
  cacheDir?: string;
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

interface Manifest {
  repo: string;
  revision: string;
  variant?: string;
  files: Record<string, { size: number; hash?: string }>;
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

/** Download (or complete) the model directory for `repo`; returns its path. */
export async function fetchModel(opts: FetchOptions = {}): Promise<string> {
  const repo = opts.repo ?? DEFAULT_MODEL_REPO;
  const env = hubSettings(); // HF_ENDPOINT / HF_TOKEN, read where every setting is read
  const hubUrl = (opts.hubUrl ?? env.hubUrl).replace(/\/+$/, '');
  const token = opts.token ?? env.token;
  const revision = opts.revision ?? 'main';
  const doFetch = opts.fetch ?? fetch;
  const dir = modelCachePath(repo, opts.cacheDir ?? defaultModelCacheDir());
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};

  let listing: RemoteFile[];
  try {
    listing = [];
    for await (const f of listFiles({ repo, revision, recursive: true, hubUrl, accessToken: token, fetch: doFetch })) {
      if (f.type !== 'file') continue;
      listing.push({
        path: f.path,
        size: f.lfs?.size ?? f.size,
        hash: f.lfs?.oid ? { algo: 'sha256', hex: f.lfs.oid } : f.oid ? { algo: 'gitsha1', hex: f.oid } : undefined,
      });
    }
  } catch (err) {
    throw fail(`Could not list ${repo} on ${hubUrl}: ${err instanceof Error ? err.message : String(err)}`, { repo, hubUrl }, err);
  }
  const files = selectFiles(listing, opts.variant);
  const destinations = new Map(files.map((f) => [f.path, destinationInside(dir, f.path)])); // all checked before any download
  await mkdir(join(dir, 'onnx'), { recursive: true });
  let manifest: Manifest = { repo, revision, variant: opts.variant, files: {} };
  try {
    const prev = JSON.parse(await readFile(join(dir, '.source.json'), 'utf8')) as Manifest;
    if (prev.repo === repo) manifest = { ...manifest, files: prev.files ?? {} };
  } catch {
    /* first fetch */
  }
  const total = files.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const progress = opts.onProgress ?? progressPrinter(total, opts.quiet);

  for (const f of files) {
    const dest = destinations.get(f.path)!;
    const known = manifest.files[f.path];
    const existing = await stat(dest).catch(() => null);
    if (existing && known && existing.size === f.size && known.size === f.size && known.hash === f.hash?.hex) {
      done += f.size;
      progress({ file: f.path, done, total, fileDone: f.size, fileTotal: f.size });
      continue;
    }
    await mkdir(dirname(dest), { recursive: true });
    const part = `${dest}.part`;
    let have = (await stat(part).catch(() => null))?.size ?? 0;
    if (have > f.size) {
      await rm(part, { force: true });
      have = 0;
    }
    const url = `${hubUrl}/${repo}/resolve/${encodeURIComponent(revision)}/${f.path}`;
    let etag: string | undefined;
    if (have < f.size || f.size === 0) {
      const res = await doFetch(url, { headers: { ...headers, ...(have > 0 ? { Range: `bytes=${have}-` } : {}) }, redirect: 'follow' });
      if (!res.ok || !res.body) {
        throw fail(`Download of ${repo}/${f.path} failed: HTTP ${res.status}`, { repo, file: f.path, status: res.status });
      }
      etag = etagHash(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
      const append = have > 0 && res.status === 206;
      if (!append) have = 0;
      const base = done;
      let fileDone = have;
      progress({ file: f.path, done: base + fileDone, total, fileDone, fileTotal: f.size });
      const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
      body.on('data', (chunk: Buffer) => {
        fileDone += chunk.length;
        progress({ file: f.path, done: base + fileDone, total, fileDone, fileTotal: f.size });
      });
      try {
        await pipeline(body, createWriteStream(part, { flags: append ? 'a' : 'w' }));
      } catch (err) {
        throw fail(
          `Download of ${repo}/${f.path} was interrupted at ${fileDone}/${f.size} bytes; run the same command again to resume`,
          { repo, file: f.path },
          err,
        );
      }
    }
    const got = (await stat(part)).size;
    if (got !== f.size) {
      await rm(part, { force: true });
      throw fail(`Size mismatch for ${f.path}: got ${got} bytes, the hub lists ${f.size}`, { file: f.path });
    }
    const expected = f.hash?.hex ?? etag;
    if (expected) {
      const algo = f.hash?.algo ?? (expected.length === 64 ? 'sha256' : 'gitsha1');
      const actual = await hashFile(part, algo, f.size);
      if (actual !== expected || (etag && f.hash && etag !== f.hash.hex && etag.length === f.hash.hex.length)) {
        await rm(part, { force: true });
        throw fail(`Checksum mismatch for ${f.path}: expected ${expected}, got ${actual}; the partial file was removed`, { file: f.path });
      }
    }
    await rename(part, dest);
    manifest.files[f.path] = { size: f.size, hash: f.hash?.hex };
    await writeFile(join(dir, '.source.json'), JSON.stringify(manifest, null, 2));
    done += f.size;
  }
  progress({ file: 'done', done: total, total, fileDone: 0, fileTotal: 0 });
  await loadModelDir(dir, opts.variant); // the result must be a loadable model directory
  return dir;
}

/**
 * For `npm start`: the model directory if it is there, else fetch it (with progress). Offline, one clear
 * MODEL_UNAVAILABLE that names the fetch command and the offline demo.
 */
export async function ensureModel(
  opts: FetchOptions & { modelDir?: string },
  log?: { info: (...args: unknown[]) => void; warn: (...args: unknown[]) => void },
): Promise<string> {
  const repo = opts.repo ?? DEFAULT_MODEL_REPO;
  // A snapshot another Hugging Face tool downloaded into the hub cache is used as it is.
  const shared = opts.modelDir || opts.cacheDir ? null : hubSnapshotDir(repo, opts.revision ?? 'main');
  if (shared) {
    try {
      await loadModelDir(shared, opts.variant);
      return shared;
    } catch {
      /* that snapshot lacks this variant's files: the project's own cache, or a fetch */
    }
  }
  const dir = opts.modelDir ?? modelCachePath(repo, opts.cacheDir ?? defaultModelCacheDir());
  try {
    await loadModelDir(dir, opts.variant);
    return dir;
  } catch {
    /* not there (or incomplete): fetch */
  }
  if (opts.modelDir && !opts.repo) {
    // an explicit directory that is not a model: don't guess a repository
    await loadModelDir(dir, opts.variant);
  }
  if (hubOffline()) {
    throw fail(`Model ${repo} is in neither the Hugging Face hub cache nor ${dir}, and HF_HUB_OFFLINE is set`, { repo, dir });
  }
  log?.info({ repo, dir }, 'model not in cache; fetching it');
  try {
    return await fetchModel({ ...opts, repo });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw fail(
      `Model ${repo} is not in ${dir} and could not be fetched (${reason}). ` +
        `Fetch it where the hub is reachable with \`npm run model -- fetch ${repo}${opts.variant ? ` --variant ${opts.variant}` : ''}\` ` +
        `(HF_ENDPOINT/HF_TOKEN are honoured) and copy the directory here, or run the offline demo, which uses a generated tiny model.`,
      { repo, dir },
      err,
    );
  }
}
