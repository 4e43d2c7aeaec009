/**
 * Bulk import of a catalog file (JSON Lines or CSV) through the same code path as upsertProducts
 * (ingestProducts: validation, image bytes, thumbnails, vectors for every wanted model, one transaction
 * per batch). A row that fails is written to the report file and the import goes on; after every committed
 * batch a checkpoint (line and sku) is saved, so a re-run resumes after the last committed row.
 *
 * Row fields: sku, title, description, category, brand, price, currency, inStock (or in_stock),
 * attributes (object, or JSON text in CSV), image: an http(s) URL or a file path (relative to
 * --images-dir, else to the catalog file's folder). Also accepted: image_url / imageUrl / image_path / imagePath.
 * Several photos: `images` (a list; CSV: JSON text) of URLs, paths or { url | path | base64, label, variant,
 * regions }, or numbered columns beside `image` (image_2, image_3, …).
 */
import { constants as fsConstants, createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ingestProducts, type IngestContext } from '../catalog/ingest.js';
import type { ImageSpec, ProductImageSpec, ProductInputLike } from '../catalog/validate.js';
import { AppError, ErrorCode } from '../errors.js';
import { readCsv } from './csv.js';

export interface ImportOptions {
  file: string;
  imagesDir?: string;
  /** Per-row errors, JSON Lines (default: <file>.errors.jsonl). */
  reportFile?: string;
  /** Checkpoint (default: <file>.import-state.json). */
  stateFile?: string;
  batchSize: number;
  /** Ignore a checkpoint and start from the first row (the report is truncated). */
  restart?: boolean;
  onProgress?: (p: ImportProgress) => void;
}

export interface ImportProgress {
  rows: number;
  done: number;
  imported: number;
  failed: number;
  skipped: number;
}

export interface ImportResult extends ImportProgress {
  reportFile: string;
  resumedAfterLine: number | null;
}

interface Checkpoint {
  file: string;
  size: number;
  lastLine: number;
  lastSku: string;
  imported: number;
  failed: number;
}

type RawRow = { line: number; row: Record<string, unknown> } | { line: number; error: string };

export async function readCatalog(file: string): Promise<RawRow[]> {
  if (/\.jsonl?$/i.test(file) || /\.ndjson$/i.test(file)) {
    const text = await fs.readFile(file, 'utf8');
    return text.split('\n').flatMap((l, i): RawRow[] => {
      if (!l.trim()) return [];
      try {
        const row = JSON.parse(l) as unknown;
        if (typeof row !== 'object' || row === null || Array.isArray(row)) return [{ line: i + 1, error: 'not a JSON object' }];
        return [{ line: i + 1, row: row as Record<string, unknown> }];
      } catch (err) {
        return [{ line: i + 1, error: `invalid JSON: ${(err as Error).message}` }];
      }
    });
  }
  if (/\.csv$/i.test(file)) {
    // A malformed record is one row of the error report; the header must be well-formed.
    const rows: RawRow[] = [];
    let names: string[] | null = null;
    for await (const r of readCsv(createReadStream(file, { encoding: 'utf8' }))) {
      if (!names) {
        if ('error' in r) throw new AppError('BAD_USER_INPUT', `${file}: the header (line ${r.line}) is not valid CSV: ${r.error}`);
        names = r.fields.map((h) => h.trim());
        continue;
      }
      const header = names;
      if ('error' in r) rows.push(r);
      else
        rows.push(
          r.fields.length !== header.length
            ? { line: r.line, error: `${r.fields.length} fields, the header has ${header.length}` }
            : { line: r.line, row: Object.fromEntries(header.map((n, i) => [n, r.fields[i]])) },
        );
    }
    return rows;
  }
  throw new AppError('BAD_USER_INPUT', `${file}: expected a .jsonl or .csv file`);
}

/** A cell as text: strings as they are, numbers and booleans printed, anything else as JSON. */
const text = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
const str = (v: unknown): string | null => (v == null || v === '' ? null : text(v));

function bool(v: unknown): boolean | null {
  if (v == null || v === '') return null;
  if (typeof v === 'boolean') return v;
  const s = text(v).trim().toLowerCase();
  if (['true', '1', 'yes', 'y'].includes(s)) return true;
  if (['false', '0', 'no', 'n'].includes(s)) return false;
  throw new Error(`inStock: "${text(v)}" is not a boolean`);
}

function num(v: unknown, field: string): number | null {
  if (v == null || v === '') return null;
  const n = typeof v === 'number' ? v : Number(text(v).trim());
  if (!Number.isFinite(n)) throw new Error(`${field}: "${text(v)}" is not a number`);
  return n;
}

/**
 * The bytes of an image named by a catalog row, as a file under `baseDir` (--images-dir). A catalog is
 * data from elsewhere (a merchant's export), so its paths must not reach the rest of the machine: no
 * absolute paths, no `..`, no symlink leading outside the folder, regular files only, and the size checked
 * on the open handle before anything is read (a multi-gigabyte file or a FIFO never stalls the import).
 */
export async function readImageFile(name: string, baseDir: string, maxBytes: number): Promise<Buffer> {
  const refuse = (why: string) => new AppError(ErrorCode.BAD_USER_INPUT, `image file ${name}: ${why}`, { path: name });
  if (path.isAbsolute(name) || path.win32.isAbsolute(name))
    throw refuse('absolute paths are refused; give a path relative to --images-dir');
  if (name.split(/[\\/]+/).includes('..')) throw refuse('".." is refused; the file must be inside --images-dir');
  const realBase = await fs.realpath(baseDir);
  const real = await fs.realpath(path.join(realBase, name)).catch((err: NodeJS.ErrnoException) => {
    throw refuse(err.code === 'ENOENT' ? 'not found' : (err.code ?? err.message));
  });
  const rel = path.relative(realBase, real);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw refuse('a symbolic link leads outside --images-dir');
  // O_NOFOLLOW: a link swapped in after realpath is refused, not followed; O_NONBLOCK: a FIFO does not block the open
  const fh = await fs
    .open(real, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
    .catch((err: NodeJS.ErrnoException) => {
      throw refuse(err.code ?? err.message);
    });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw refuse('not a regular file');
    if (st.size > maxBytes) {
      throw new AppError(ErrorCode.IMAGE_TOO_LARGE, `image file ${name} is ${st.size} bytes; the limit is ${maxBytes}`, {
        path: name,
        maxImageBytes: maxBytes,
      });
    }
    const bytes = await fh.readFile();
    // the file may have grown between the stat and the read
    if (bytes.length > maxBytes) throw new AppError(ErrorCode.IMAGE_TOO_LARGE, `image file ${name} is larger than ${maxBytes} bytes`);
    return bytes;
  } finally {
    await fh.close();
  }
}

/** One image named by a catalog row: an http(s) URL, a file path, or (JSON Lines) { url } / { base64 }. */
async function imageSpec(v: unknown, baseDir: string, maxBytes: number): Promise<ImageSpec | null> {
  if (v == null || v === '') return null;
  if (typeof v === 'object') return v; // JSON Lines may carry { url } or { base64 }
  const s = text(v).trim();
  if (/^https?:\/\//i.test(s)) return { url: s };
  const bytes = await readImageFile(s, baseDir, maxBytes);
  return { base64: bytes.toString('base64') };
}

async function imageOf(row: Record<string, unknown>, baseDir: string, maxBytes: number): Promise<ImageSpec | null> {
  return imageSpec(row.image ?? row.image_url ?? row.imageUrl ?? row.image_path ?? row.imagePath, baseDir, maxBytes);
}

/** Columns image_2, image_3, … (or image_1, …) after `image`, in their number's order. */
const NUMBERED_IMAGE = /^image_?(\d+)$/i;

/**
 * Several photos of a row (issue 22): `images`, a list (JSON Lines: an array; CSV: JSON text of one) whose
 * items are a URL or path, or an object { url | path | base64, label, variant, regions }; or numbered image
 * columns beside `image` (CSV exports: image, image_2, image_3…). null: the row names at most one image
 * (the `image` shorthand).
 */
async function imagesOf(row: Record<string, unknown>, baseDir: string, maxBytes: number): Promise<ProductImageSpec[] | null> {
  let list = row.images;
  if (typeof list === 'string') list = list.trim() ? (JSON.parse(list) as unknown) : null;
  if (list != null) {
    if (!Array.isArray(list)) throw new Error('images: expected a list');
    return Promise.all(
      list.map(async (item: unknown, j): Promise<ProductImageSpec> => {
        if (item === null || typeof item !== 'object') return { image: (await imageSpec(item, baseDir, maxBytes)) ?? {} };
        const o = item as Record<string, unknown>;
        const source = o.base64 != null ? { base64: text(o.base64) } : await imageSpec(o.url ?? o.path ?? o.image, baseDir, maxBytes);
        if (!source) throw new Error(`images[${j}]: needs url, path or base64`);
        return {
          image: source,
          label: str(o.label),
          variant: str(o.variant),
          regions: Array.isArray(o.regions) ? (o.regions as ProductImageSpec['regions']) : null,
        };
      }),
    );
  }
  const numbered = Object.keys(row)
    .map((k) => ({ k, n: NUMBERED_IMAGE.exec(k)?.[1] }))
    .filter((c): c is { k: string; n: string } => c.n !== undefined && row[c.k] != null && row[c.k] !== '')
    .sort((a, b) => Number(a.n) - Number(b.n));
  if (numbered.length === 0) return null;
  const first = await imageOf(row, baseDir, maxBytes);
  const rest = await Promise.all(numbered.map((c) => imageSpec(row[c.k], baseDir, maxBytes)));
  return [first, ...rest].filter((s): s is ImageSpec => s !== null).map((image) => ({ image }));
}

/** `maxBytes`: the largest image file read (the ingest limit, IMAGE_MAX_BYTES). */
export async function toProductInput(row: Record<string, unknown>, baseDir: string, maxBytes: number): Promise<ProductInputLike> {
  let attributes = row.attributes;
  if (typeof attributes === 'string') {
    attributes = attributes.trim() ? (JSON.parse(attributes) as unknown) : undefined;
  }
  const images = await imagesOf(row, baseDir, maxBytes);
  return {
    sku: str(row.sku)?.trim() ?? '',
    title: str(row.title) ?? '',
    description: str(row.description),
    category: str(row.category) ?? '',
    brand: str(row.brand),
    price: num(row.price, 'price'),
    currency: str(row.currency),
    inStock: bool(row.inStock ?? row.in_stock),
    attributes: attributes ?? undefined,
    ...(images ? { images } : { image: await imageOf(row, baseDir, maxBytes) }),
  };
}

const message = (err: unknown) =>
  err instanceof AppError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);

export async function importCatalog(ctx: IngestContext, opts: ImportOptions): Promise<ImportResult> {
  const file = path.resolve(opts.file);
  const reportFile = path.resolve(opts.reportFile ?? `${file}.errors.jsonl`);
  const stateFile = path.resolve(opts.stateFile ?? `${file}.import-state.json`);
  const baseDir = path.resolve(opts.imagesDir ?? path.dirname(file));
  const size = (await fs.stat(file)).size;
  const rows = await readCatalog(file);

  let checkpoint: Checkpoint | null = null;
  if (!opts.restart) {
    try {
      const saved = JSON.parse(await fs.readFile(stateFile, 'utf8')) as Checkpoint;
      const at = rows.find((r) => r.line === saved.lastLine);
      // resume only when the row at the checkpoint still carries the checkpoint's sku
      if (saved.file === file && at && 'row' in at && str(at.row.sku)?.trim() === saved.lastSku) checkpoint = saved;
    } catch {
      /* no checkpoint */
    }
  }
  if (!checkpoint) await fs.writeFile(reportFile, '');

  const progress: ImportProgress = {
    rows: rows.length,
    done: 0,
    imported: checkpoint?.imported ?? 0,
    failed: checkpoint?.failed ?? 0,
    skipped: 0,
  };
  const todo = checkpoint ? rows.filter((r) => r.line > checkpoint.lastLine) : rows;
  progress.skipped = rows.length - todo.length;
  progress.done = progress.skipped;
  opts.onProgress?.(progress);

  const report = async (entries: Array<{ line: number; sku: string | null; error: string }>) => {
    if (entries.length) await fs.appendFile(reportFile, entries.map((e) => JSON.stringify(e)).join('\n') + '\n');
    progress.failed += entries.length;
  };

  for (let i = 0; i < todo.length; i += opts.batchSize) {
    const chunk = todo.slice(i, i + opts.batchSize);
    const errors: Array<{ line: number; sku: string | null; error: string }> = [];
    const ready: Array<{ line: number; sku: string | null; input: ProductInputLike }> = [];
    const seen = new Set<string>();
    for (const r of chunk) {
      if ('error' in r) {
        errors.push({ line: r.line, sku: null, error: r.error });
        continue;
      }
      const sku = str(r.row.sku)?.trim() ?? null;
      try {
        const input = await toProductInput(r.row, baseDir, ctx.fetchOptions.maxBytes);
        if (sku && seen.has(sku)) {
          // a sku twice in one batch: the later row wins, as in sequential upserts
          const prev = ready.findIndex((x) => x.sku === sku);
          ready.splice(prev, 1);
        }
        if (sku) seen.add(sku);
        ready.push({ line: r.line, sku, input });
      } catch (err) {
        errors.push({ line: r.line, sku, error: message(err) });
      }
    }
    if (ready.length) {
      try {
        await ingestProducts(
          ctx,
          ready.map((r) => r.input),
        );
        progress.imported += ready.length;
      } catch {
        // isolate the bad rows: one row at a time (each its own transaction, as upsertProducts would be)
        for (const r of ready) {
          try {
            await ingestProducts(ctx, [r.input]);
            progress.imported++;
          } catch (err) {
            errors.push({ line: r.line, sku: r.sku, error: message(err) });
          }
        }
      }
    }
    await report(errors.sort((a, b) => a.line - b.line));
    const last = chunk.at(-1)!;
    const lastSku = 'row' in last ? (str(last.row.sku)?.trim() ?? '') : '';
    const next: Checkpoint = { file, size, lastLine: last.line, lastSku, imported: progress.imported, failed: progress.failed };
    // a checkpoint can only name a row with a sku; rows without one are re-read (and re-reported) on resume
    if (lastSku) await fs.writeFile(stateFile, JSON.stringify(next));
    progress.done += chunk.length;
    opts.onProgress?.(progress);
  }
  await fs.rm(stateFile, { force: true }); // finished: a re-run starts over (unchanged rows are cheap: images are not re-embedded)
  return { ...progress, reportFile, resumedAfterLine: checkpoint?.lastLine ?? null };
}
