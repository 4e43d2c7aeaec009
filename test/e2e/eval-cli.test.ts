/**
 * `vps eval` as an operator runs it: a process of its own over an embedded database that a previous process
 * filled with a demo-like catalog (generated photos, the tiny generated model, real ONNX Runtime), then the
 * table, --json, the HTML report file, a labelled query set, --held-out on the products that have a second
 * photo, and refused options.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { ingestProducts } from '../../src/catalog/ingest.js';
import { loadConfig } from '../../src/config.js';
import { demoProducts, type DemoProduct } from '../../src/demo/seed.js';
import { perturb } from '../../src/demo/synthetic-catalog.js';
import { createLogger } from '../../src/log.js';
import { buildServices } from '../../src/services.js';
import { vpsArgs } from '../support/vps-command.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vps-eval-cli-'));
const env = {
  DATA_DIR: path.join(work, 'data'),
  EMBEDDING_MODEL_DIR: path.join(work, 'model'),
  PGLITE_PSQL_PORT: 'off',
  LOG_LEVEL: 'silent',
  MODEL_AUTO_FETCH: 'false',
};
let catalog: DemoProduct[];
const HELD_OUT = 8;

function vps(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const { DATABASE_URL: _ignored, ...rest } = process.env;
    const child = spawn(process.execPath, vpsArgs(...args), { cwd: work, env: { ...rest, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  await writeTinyModel(env.EMBEDDING_MODEL_DIR, { modelId: 'vps/tiny-eval-cli' });
  const config = loadConfig(env);
  const services = await buildServices(config, createLogger('silent'), { psqlPort: false, model: 'configured' });
  try {
    catalog = await demoProducts(30);
    // The first HELD_OUT products have a second photo (a crop of the first): what --held-out samples.
    const second = await Promise.all(catalog.slice(0, HELD_OUT).map((p) => perturb(p.image, 'crop')));
    await ingestProducts(
      services.ingest,
      catalog.map((p, i) => ({
        sku: p.sku,
        title: p.title,
        category: p.category,
        brand: p.brand,
        price: p.price,
        currency: p.currency,
        ...(i < HELD_OUT ? { images: [{ image: { bytes: p.image } }, { image: { bytes: second[i]! } }] } : { image: { bytes: p.image } }),
      })),
    );
  } finally {
    await services.close();
  }
}, 120_000);

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('vps eval', () => {
  it('prints the figures as JSON and writes a self-contained HTML report', async () => {
    const r = await vps(['eval', '--transforms', 'identity,jpeg', '--json', '--html', 'report.html']);
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      k: 10,
      products: 30,
      queries: 60,
      sources: ['identity', 'jpeg'],
      html: path.join(fs.realpathSync(work), 'report.html'),
    });
    const [m] = out.models;
    expect(m).toMatchObject({ model: 'vps/tiny-eval-cli', active: true });
    expect(m.byTransform.find((t: { transform: string }) => t.transform === 'identity').metrics).toMatchObject({
      queries: 30,
      recallAt1: 1,
      mrr: 1,
    });
    const html = fs.readFileSync(path.join(work, 'report.html'), 'utf8');
    expect(html).toContain('vps/tiny-eval-cli');
    expect(html).toMatch(/src="data:image\/jpeg;base64,/);
    expect(html).not.toMatch(/src="(?!data:)/);
  }, 120_000);

  it('evaluates a labelled query set and prints the table', async () => {
    const dir = path.join(work, 'set');
    fs.mkdirSync(dir, { recursive: true });
    const lines = catalog.slice(0, 5).map((p) => {
      fs.writeFileSync(path.join(dir, `${p.sku}.png`), p.image);
      return JSON.stringify({ image: `${p.sku}.png`, sku: p.sku });
    });
    fs.writeFileSync(path.join(dir, 'set.jsonl'), `${lines.join('\n')}\n`);
    const r = await vps(['eval', '--queries', 'set/set.jsonl', '--no-html']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/vps\/tiny-eval-cli\s+all\s+5\s+100\.0\s+100\.0\s+100\.0\s+1\.000/);
    expect(r.stdout).toContain('5 queries on 5 products (labelled)');
    expect(r.stdout).not.toContain('HTML report');
  }, 120_000);

  it('holds out the last photo of each product that has two (--held-out): both rankings, as a table and as JSON', async () => {
    const r = await vps(['eval', '--held-out', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ k: 10, products: HELD_OUT, skipped: 0 });
    expect(out.outcomes).toBeUndefined(); // figures only
    const [m] = out.models;
    expect(m).toMatchObject({ model: 'vps/tiny-eval-cli', bestPhoto: { queries: HELD_OUT }, firstPhoto: { queries: HELD_OUT } });
    const table = await vps(['eval', '--held-out', '--limit', '3']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/vps\/tiny-eval-cli\s+best photo\s+3\s/);
    expect(table.stdout).toMatch(/vps\/tiny-eval-cli\s+first photo only\s+3\s/);
    const refused = await vps(['eval', '--held-out', '--transforms', 'crop']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--held-out makes its own queries');
  }, 120_000);

  it('refuses an unknown transform, naming the choices', async () => {
    const r = await vps(['eval', '--transforms', 'blur']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown transform blur: choose from identity, crop, scale, jpeg, brightness, background');
  });
});
