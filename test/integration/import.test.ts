/**
 * Bulk import: JSON Lines and CSV through the upsertProducts code path, per-row errors in a report without
 * aborting, resume after an interruption from the checkpoint, and the CLI entry end to end.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog } from '../../src/demo/synthetic-catalog.js';
import { importCatalog } from '../../src/jobs/import.js';
import type { IngestContext } from '../../src/catalog/ingest.js';
import { startTestService, type TestService } from '../support/service.js';
import { writeModelA } from './reindex-support.js';
import { vpsArgs } from '../support/vps-command.js';

let t: TestService;
let dir: string;
let A: { dir: string; id: string };
let ctx: IngestContext;
const cat = syntheticCatalog(30, 4);

beforeAll(async () => {
  A = await writeModelA();
  t = await startTestService({}, { model: A.dir });
  const s = t.service.services;
  ctx = { db: s.database.db, models: s.models, fetchOptions: s.fetchOptions, imageLimits: s.imageLimits };
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-import-'));
  await fs.mkdir(path.join(dir, 'img'));
  for (const [i, p] of cat.entries())
    await fs.writeFile(path.join(dir, 'img', `${i}.png`), await renderProductImage(p.shape, p.colour, { size: 64 }));
}, 120_000);
afterAll(async () => {
  await t?.stop();
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(A.dir, { recursive: true, force: true });
});

const db = () => t.service.services.database.db;
async function countWithVectors(prefix: string) {
  const r = await sql<{ products: string; vectors: string }>`
    SELECT count(*) AS products, count(e.product_id) AS vectors FROM products p
    LEFT JOIN product_embeddings e ON e.product_id = p.id AND e.model_id = ${A.id}
    WHERE p.sku LIKE ${prefix + '%'}`.execute(db());
  return { products: Number(r.rows[0]!.products), vectors: Number(r.rows[0]!.vectors) };
}
const readReport = async (f: string) =>
  (await fs.readFile(f, 'utf8'))
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('import', () => {
  it('imports JSON Lines, reporting bad rows without aborting', async () => {
    const lines = cat.slice(0, 20).map((p, i) =>
      JSON.stringify({
        sku: `J-${i}`,
        title: p.title,
        category: p.category,
        brand: p.brand,
        price: p.price,
        currency: 'EUR',
        inStock: i % 2 === 0,
        attributes: { i },
        image: `${i}.png`,
      }),
    );
    lines[3] = '{not json';
    lines[7] = JSON.stringify({ sku: 'J-7', title: 'x', category: 'bags', price: -1, image: '7.png' }); // negative price
    lines[11] = JSON.stringify({ sku: 'J-11', title: 'x', category: 'bags', image: 'nope.png' }); // no such file
    const file = path.join(dir, 'catalog.jsonl');
    await fs.writeFile(file, lines.join('\n') + '\n');
    const res = await importCatalog(ctx, { file, imagesDir: path.join(dir, 'img'), batchSize: 6 });
    expect(res).toMatchObject({ rows: 20, imported: 17, failed: 3, resumedAfterLine: null });
    const report = await readReport(res.reportFile);
    expect(report.map((e: any) => e.line)).toEqual([4, 8, 12]);
    expect(report[1].sku).toBe('J-7');
    expect(report[2].error).toMatch(/not found/);
    expect(await countWithVectors('J-')).toEqual({ products: 17, vectors: 17 });
  });

  it('resumes after an interruption from the last committed batch', async () => {
    const rows = ['sku,title,category,brand,price,currency,in_stock,attributes,image'];
    cat.forEach((p, i) =>
      rows.push(`C-${i},"${p.title}, ""quoted""",${p.category},${p.brand},${p.price},EUR,${i % 3 ? 'yes' : 'no'},"{""n"": ${i}}",${i}.png`),
    );
    const file = path.join(dir, 'catalog.csv');
    await fs.writeFile(file, rows.join('\r\n') + '\r\n');
    let batches = 0;
    await expect(
      importCatalog(ctx, {
        file,
        imagesDir: path.join(dir, 'img'),
        batchSize: 8,
        onProgress: (p) => {
          if (p.done > 0 && ++batches === 2) throw new Error('killed'); // after two committed batches
        },
      }),
    ).rejects.toThrow('killed');
    expect((await countWithVectors('C-')).products).toBe(16);
    const res = await importCatalog(ctx, { file, imagesDir: path.join(dir, 'img'), batchSize: 8 });
    expect(res).toMatchObject({ rows: 30, imported: 30, failed: 0, skipped: 16, resumedAfterLine: 17 });
    expect(await countWithVectors('C-')).toEqual({ products: 30, vectors: 30 });
    const one = await sql<{
      title: string;
      in_stock: boolean;
      attributes: unknown;
    }>`SELECT title, in_stock, attributes FROM products WHERE sku = 'C-3'`.execute(db());
    expect(one.rows[0]).toEqual({ title: `${cat[3]!.title}, "quoted"`, in_stock: false, attributes: { n: 3 } });
    // finished: the checkpoint is gone, a re-run starts over and changes nothing
    const again = await importCatalog(ctx, { file, imagesDir: path.join(dir, 'img'), batchSize: 50 });
    expect(again).toMatchObject({ imported: 30, resumedAfterLine: null });
    expect(await countWithVectors('C-')).toEqual({ products: 30, vectors: 30 });
  });

  it('reports malformed CSV records by line and imports the rest: a bad closing quote, a lone CR, an unterminated quote', async () => {
    const row = (i: number) => `Q-${i},Title ${i},${cat[i]!.category},${i}.png`;
    const text =
      'sku,title,category,image\n' +
      `${row(0)}\n` + // line 2
      `"Q-1"x,Title 1,${cat[1]!.category},1.png\n` + // line 3: `"a"b,c` is one bad record, not two
      `${row(2)}\r` + // line 4, ended by a lone CR
      `${row(3)}\n` + // line 5
      `${row(4)},"unterminated\n` + // line 6: the quote runs to the end of the file
      `${row(5)}\n`;
    const file = path.join(dir, 'malformed.csv');
    await fs.writeFile(file, text);
    const res = await importCatalog(ctx, { file, imagesDir: path.join(dir, 'img'), batchSize: 50 });
    expect(res).toMatchObject({ rows: 5, imported: 3, failed: 2 });
    const report = await readReport(res.reportFile);
    expect(report.map((e: any) => e.line)).toEqual([3, 6]);
    expect(report[0].error).toMatch(/closing quote/);
    expect(report[1].error).toMatch(/unterminated/);
    expect(await countWithVectors('Q-')).toEqual({ products: 3, vectors: 3 });
  });

  it('runs as `vps import` with a progress bar and a summary', async () => {
    const file = path.join(dir, 'cli.jsonl');
    await fs.writeFile(
      file,
      cat
        .slice(0, 5)
        .map((p, i) => JSON.stringify({ sku: `CLI-${i}`, title: p.title, category: p.category, image: `img/${i}.png` }))
        .join('\n'),
    );
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-import-cli-'));
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      LOG_LEVEL: 'warn',
      EMBEDDING_MODEL_DIR: A.dir,
      DATA_DIR: dataDir,
      PGLITE_PSQL_PORT: '0',
    };
    delete env.DATABASE_URL;
    const proc = spawn(process.execPath, vpsArgs('import', file, '--batch', '2'), {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((r) => proc.on('exit', r));
    await fs.rm(dataDir, { recursive: true, force: true });
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/imported 5, failed 0 of 5 rows/);
    expect(stderr).toMatch(/import \[#+\] 100% 5\/5/);
  }, 120_000);
});
