/**
 * Catalog import paths stay inside --images-dir: absolute paths, `..`, symlinks leading out, non-regular
 * files and oversized files are each one error row of the report, and the rest of the catalog imports.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { importCatalog, readImageFile } from '../../src/jobs/import.js';
import type { IngestContext } from '../../src/catalog/ingest.js';
import { startTestService, type TestService } from '../support/service.js';
import { writeModelA } from './reindex-support.js';

let t: TestService;
let root: string;
let imgDir: string;
let A: { dir: string; id: string };
let ctx: IngestContext;

beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-import-paths-'));
  imgDir = path.join(root, 'img');
  await fs.mkdir(imgDir);
  await fs.mkdir(path.join(imgDir, 'sub'));
  const png = await renderProductImage('circle', 'red', { size: 32 });
  await fs.writeFile(path.join(imgDir, 'ok.png'), png);
  await fs.writeFile(path.join(imgDir, 'sub', 'ok2.png'), png);
  await fs.writeFile(path.join(root, 'outside.png'), png); // next to --images-dir, not inside it
  await fs.symlink(path.join(root, 'outside.png'), path.join(imgDir, 'escape.png'));
  await fs.symlink(path.join(imgDir, 'ok.png'), path.join(imgDir, 'inside-link.png'));
  await fs.writeFile(path.join(imgDir, 'big.png'), Buffer.alloc(4096, 1));
  execFileSync('mkfifo', [path.join(imgDir, 'fifo.png')]);
}, 30_000);
afterAll(async () => {
  await t?.stop();
  await fs.rm(root, { recursive: true, force: true });
  if (A) await fs.rm(A.dir, { recursive: true, force: true });
});

describe('readImageFile', () => {
  const read = (name: string, max = 1 << 20) => readImageFile(name, imgDir, max);
  it('reads files inside the folder, links that stay inside included', async () => {
    expect((await read('ok.png')).length).toBeGreaterThan(0);
    expect((await read('sub/ok2.png')).length).toBeGreaterThan(0);
    expect((await read('inside-link.png')).length).toBeGreaterThan(0);
  });
  it('refuses absolute paths, "..", symlink escapes, non-regular files and oversized files', async () => {
    await expect(read(path.join(root, 'outside.png'))).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /absolute/ });
    await expect(read('../outside.png')).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /\.\./ });
    await expect(read('sub/../../outside.png')).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    await expect(read('escape.png')).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /outside/ });
    await expect(read('sub')).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /regular file/ });
    await expect(read('fifo.png')).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /regular file/ });
    await expect(read('big.png', 1000)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(read('missing.png')).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: /not found/ });
  });
});

describe('importCatalog with hostile paths', () => {
  it('reports each bad path as one error row and imports the rest', async () => {
    A = await writeModelA();
    t = await startTestService({}, { model: A.dir });
    const s = t.service.services;
    ctx = { db: s.database.db, models: s.models, fetchOptions: { ...s.fetchOptions, maxBytes: 2000 }, imageLimits: s.imageLimits };
    const images = ['ok.png', path.join(root, 'outside.png'), '../outside.png', 'escape.png', 'fifo.png', 'big.png', 'sub/ok2.png'];
    const lines = images.map((image, i) => JSON.stringify({ sku: `P-${i}`, title: 't', category: 'bags', image }));
    const file = path.join(root, 'catalog.jsonl');
    await fs.writeFile(file, lines.join('\n') + '\n');
    const res = await importCatalog(ctx, { file, imagesDir: imgDir, batchSize: 10 });
    expect(res).toMatchObject({ rows: 7, imported: 2, failed: 5 });
    const report = (await fs.readFile(res.reportFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; error: string });
    expect(report.map((r) => r.line)).toEqual([2, 3, 4, 5, 6]);
    expect(report[4]!.error).toMatch(/^IMAGE_TOO_LARGE/);
    const skus = (await s.database.db.selectFrom('products').select('sku').where('sku', 'like', 'P-%').orderBy('sku').execute()).map(
      (r) => r.sku,
    );
    expect(skus).toEqual(['P-0', 'P-6']);
  }, 120_000);
});
