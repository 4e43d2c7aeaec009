/**
 * `vps import hf://datasets/<owner>/<name>`: a Hugging Face image dataset (Parquet files with an image
 * column of {bytes, path}, as ceyda/fashion-products-small has them) into the catalog.
 *
 * The Parquet files are listed through the hub's parquet API (GET /api/datasets/<repo>/parquet, which
 * lists the files of every config and split, converted by the hub if the repository holds another
 * format) and downloaded into <DATA_DIR>/datasets/<owner>--<name>/ (skipped when already complete).
 * Their rows are then written, with the column mapping, as a JSON Lines catalog beside them (images as
 * files), and that catalog goes through importCatalog: the same validation, batching, per-row error
 * report and checkpoint as a JSONL/CSV import, so an interrupted import resumes where it stopped (the
 * conversion is deterministic: the same rows land on the same lines).
 */
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { IngestContext } from '../catalog/ingest.js';
import { AppError, ErrorCode } from '../errors.js';
import { importCatalog, type ImportOptions, type ImportResult } from './import.js';

export const HF_DATASET_PREFIX = 'hf://datasets/';

/** Catalog field ← dataset column. Unmapped scalar columns become attributes. */
export type ColumnMapping = Partial<
  Record<'sku' | 'title' | 'description' | 'category' | 'brand' | 'price' | 'currency' | 'image', string>
>;

/**
 * Defaults that fit ceyda/fashion-products-small (id, gender, masterCategory, subCategory, articleType,
 * baseColour, season, year, usage, productDisplayName, image) and common names elsewhere; the first
 * column present wins. articleType ("Shirts", "Watches") is the category shoppers filter on.
 */
const DEFAULT_CANDIDATES: Record<keyof ColumnMapping, string[]> = {
  sku: ['sku', 'id', 'product_id'],
  title: ['title', 'productDisplayName', 'name', 'caption', 'text'],
  description: ['description'],
  category: ['category', 'articleType', 'subCategory', 'label'],
  brand: ['brand'],
  price: ['price'],
  currency: ['currency'],
  image: ['image', 'img'],
};

export function isHfDataset(source: string): boolean {
  return source.startsWith(HF_DATASET_PREFIX);
}

/** hf://datasets/owner/name[@revision] → repo (and revision). */
export function parseHfDataset(source: string): { repo: string; revision: string } {
  const m = /^hf:\/\/datasets\/([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?\/?$/.exec(source);
  if (!m) throw new AppError(ErrorCode.BAD_USER_INPUT, `Not a dataset reference: ${source} (expected hf://datasets/<owner>/<name>)`);
  return { repo: m[1]!, revision: m[2] ?? 'main' };
}

/** "title=productDisplayName,category=masterCategory" → mapping; unknown fields are refused. */
export function parseMapping(text: string | undefined): ColumnMapping {
  const out: ColumnMapping = {};
  for (const pair of (text ?? '').split(',').filter((x) => x.trim())) {
    const [field, column] = pair.split('=').map((x) => x.trim());
    if (!field || !column || !(field in DEFAULT_CANDIDATES)) {
      throw new AppError(
        ErrorCode.BAD_USER_INPUT,
        `--map: "${pair}" is not field=column with a field of ${Object.keys(DEFAULT_CANDIDATES).join(', ')}`,
      );
    }
    out[field as keyof ColumnMapping] = column;
  }
  return out;
}

export interface HfDatasetOptions extends Omit<ImportOptions, 'file'> {
  source: string;
  hubUrl: string;
  token?: string | undefined;
  /** Where the Parquet files and the converted catalog are kept (resumable; default DATA_DIR/datasets). */
  workDir: string;
  split?: string;
  config?: string;
  mapping?: ColumnMapping;
  /** Import at most this many rows (a quick look at a large dataset). */
  limit?: number;
  fetch?: typeof fetch;
  onDownload?: (p: { file: string; done: number; total: number }) => void;
}

const fail = (message: string, details?: Record<string, unknown>) => new AppError(ErrorCode.BAD_USER_INPUT, message, details);

/** The Parquet file URLs of a config's split, from the hub's parquet API. */
async function listParquet(o: HfDatasetOptions, repo: string): Promise<{ config: string; split: string; urls: string[] }> {
  const doFetch = o.fetch ?? fetch;
  const headers: Record<string, string> = o.token ? { Authorization: `Bearer ${o.token}` } : {};
  const url = `${o.hubUrl}/api/datasets/${repo}/parquet`;
  const res = await doFetch(url, { headers });
  if (!res.ok) throw fail(`Could not list the Parquet files of ${repo}: HTTP ${res.status}`, { repo, status: res.status });
  const listing = (await res.json()) as Record<string, Record<string, string[]>>;
  const config = o.config ?? (listing.default ? 'default' : Object.keys(listing)[0]);
  const splits = config ? listing[config] : undefined;
  if (!config || !splits) throw fail(`${repo} has no Parquet config${o.config ? ` named ${o.config}` : ''}`, { repo });
  const split = o.split ?? (splits.train ? 'train' : Object.keys(splits)[0]);
  const urls = split ? splits[split] : undefined;
  if (!split || !urls?.length)
    throw fail(`${repo} (${config}) has no split${o.split ? ` named ${o.split}` : ''}: ${Object.keys(splits).join(', ')}`);
  return { config, split, urls };
}

/** Downloads a file unless it is already there whole (a .part is renamed into place only when complete). */
async function download(o: HfDatasetOptions, url: string, dest: string): Promise<void> {
  const doFetch = o.fetch ?? fetch;
  const headers: Record<string, string> = o.token ? { Authorization: `Bearer ${o.token}` } : {};
  if (await fs.stat(dest).catch(() => null)) return;
  const res = await doFetch(url, { headers, redirect: 'follow' });
  if (!res.ok || !res.body) throw fail(`Download of ${url} failed: HTTP ${res.status}`, { status: res.status });
  const total = Number(res.headers.get('content-length') ?? 0);
  let done = 0;
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (c: Buffer) => {
    done += c.length;
    o.onDownload?.({ file: path.basename(dest), done, total });
  });
  await pipeline(body, createWriteStream(`${dest}.part`));
  await fs.rename(`${dest}.part`, dest);
}

const EXT: Record<string, string> = { '\xff\xd8': '.jpg', '\x89P': '.png', GI: '.gif', RI: '.webp' };

function scalar(v: unknown): string | number | boolean | null {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  return null;
}

/** The image columns of a mapping's image entry (a product's photos in order): "front+back". */
export const imageColumns = (value: string) => value.split('+').filter(Boolean);

/** Column mapping: explicit, else the first default candidate the schema has. */
export function resolveMapping(columns: string[], explicit: ColumnMapping = {}): Required<Pick<ColumnMapping, 'image'>> & ColumnMapping {
  const have = new Set(columns);
  const out: ColumnMapping = {};
  for (const [field, candidates] of Object.entries(DEFAULT_CANDIDATES) as [keyof ColumnMapping, string[]][]) {
    const column = explicit[field] ?? candidates.find((c) => have.has(c));
    // image may name several columns, a product's photos in order: --map image=front+back+detail
    const named = field === 'image' ? imageColumns(explicit[field] ?? '') : [explicit[field] ?? ''];
    const missing = named.find((c) => c && !have.has(c));
    if (missing) throw fail(`--map ${field}=${explicit[field]}: no such column ${missing} (columns: ${columns.join(', ')})`);
    if (column) out[field] = column;
  }
  if (!out.image) throw fail(`No image column (columns: ${columns.join(', ')}); name it with --map image=COLUMN`);
  return out as Required<Pick<ColumnMapping, 'image'>> & ColumnMapping;
}

/** Writes the Parquet rows as a JSONL catalog (images as files beside it); returns its path. */
async function convert(files: string[], dir: string, o: HfDatasetOptions, repo: string): Promise<string> {
  const catalog = path.join(dir, `catalog.${o.config ?? 'default'}.${o.split ?? 'train'}.jsonl`);
  const imagesDir = path.join(dir, 'images');
  await fs.mkdir(imagesDir, { recursive: true });
  const out = createWriteStream(`${catalog}.part`);
  const write = (line: string) => new Promise<void>((resolve, reject) => out.write(line, (err) => (err ? reject(err) : resolve())));
  let row = 0;
  const prefix = repo
    .split('/')[1]!
    .replace(/[^\w-]/g, '')
    .slice(0, 24);
  outer: for (const file of files) {
    const buffer = await asyncBufferFromFile(file);
    const meta = await parquetMetadataAsync(buffer);
    const map = resolveMapping(topLevelColumns(meta.schema), o.mapping);
    const rowsInFile = Number(meta.num_rows);
    for (let start = 0; start < rowsInFile; start += 500) {
      const rows = (await parquetReadObjects({
        file: buffer,
        metadata: meta,
        rowStart: start,
        rowEnd: Math.min(rowsInFile, start + 500),
        compressors,
        utf8: false,
      })) as Record<string, unknown>[];
      for (const r of rows) {
        if (o.limit !== undefined && row >= o.limit) break outer;
        row++;
        const skuValue = map.sku ? scalar(r[map.sku]) : null;
        const sku = skuValue === null ? `${prefix}-${row}` : `${prefix}-${String(skuValue)}`;
        const entry: Record<string, unknown> = { sku };
        for (const f of ['title', 'description', 'category', 'brand', 'price', 'currency'] as const) {
          const c = map[f];
          if (c) entry[f] = scalar(r[c]);
        }
        const images: string[] = [];
        for (const [j, column] of imageColumns(map.image).entries()) {
          const image = r[column] as { bytes?: unknown; path?: unknown } | null | undefined;
          const bytes = image?.bytes instanceof Uint8Array ? image.bytes : null;
          if (bytes) {
            const ext = EXT[String.fromCharCode(bytes[0] ?? 0, bytes[1] ?? 0)] ?? '.img';
            const name = j === 0 ? `${row}${ext}` : `${row}-${j + 1}${ext}`;
            await fs.writeFile(path.join(imagesDir, name), bytes);
            images.push(`images/${name}`);
          } else if (typeof image?.path === 'string' && /^https?:\/\//.test(image.path)) {
            images.push(image.path);
          }
        }
        // none: the import reports the row; several: the product's photos in the columns' order
        if (images.length === 1) entry.image = images[0];
        else if (images.length > 1) entry.images = images;
        const used = new Set([...Object.values(map), ...imageColumns(map.image)]);
        const attributes: Record<string, string | number | boolean> = {};
        for (const [k, v] of Object.entries(r)) {
          const value = used.has(k) ? null : scalar(v);
          if (value !== null) attributes[k] = value;
        }
        if (Object.keys(attributes).length) entry.attributes = attributes;
        await write(`${JSON.stringify(entry)}\n`);
      }
    }
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await fs.rename(`${catalog}.part`, catalog);
  return catalog;
}

function topLevelColumns(schema: { name: string; num_children?: number | undefined }[]): string[] {
  const out: string[] = [];
  let i = 1;
  const skip = (at: number): number => {
    let next = at + 1;
    for (let c = 0; c < (schema[at]!.num_children ?? 0); c++) next = skip(next);
    return next;
  };
  while (i < schema.length) {
    out.push(schema[i]!.name);
    i = skip(i);
  }
  return out;
}

/** Lists, downloads, converts (once) and imports a hub dataset's split. */
export async function importHfDataset(ctx: IngestContext, o: HfDatasetOptions): Promise<ImportResult & { repo: string; split: string }> {
  const { repo } = parseHfDataset(o.source);
  const dir = path.join(o.workDir, repo.replace('/', '--'));
  await fs.mkdir(dir, { recursive: true });
  const { config, split, urls } = await listParquet(o, repo);
  const files: string[] = [];
  for (const [i, url] of urls.entries()) {
    const dest = path.join(dir, `${config}-${split}-${String(i).padStart(5, '0')}.parquet`);
    await download(o, url, dest);
    files.push(dest);
  }
  const opts = { ...o, config, split };
  const catalogPath = path.join(dir, `catalog.${config}.${split}.jsonl`);
  const catalog = o.restart || !(await fs.stat(catalogPath).catch(() => null)) ? await convert(files, dir, opts, repo) : catalogPath;
  const result = await importCatalog(ctx, {
    file: catalog,
    imagesDir: dir,
    batchSize: o.batchSize,
    ...(o.restart !== undefined ? { restart: o.restart } : {}),
    ...(o.reportFile ? { reportFile: o.reportFile } : {}),
    ...(o.stateFile ? { stateFile: o.stateFile } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return { ...result, repo, split };
}
