/**
 * `npm run demo` as a shopper meets it on a fresh clone: no model in the cache, nothing on disk. It runs in
 * an empty working directory (so no cached SigLIP 2 model is found and nothing lands in the repository),
 * prints the page's address, serves the page and a seeded catalog with the stand-in model, and a second run
 * over the same directory finds the catalog and does not seed again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TSX = path.join(REPO, 'node_modules', '.bin', 'tsx');
const MAIN = path.join(REPO, 'src', 'demo', 'main.ts');

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vps-demo-'));
const children = new Set<ChildProcess>();

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  fs.rmSync(workDir, { recursive: true, force: true });
});

interface DemoRun {
  url: string;
  output: () => string;
  stop(): Promise<number | null>;
}

/** Starts the demo and resolves once it prints the storefront's address. */
function startDemo(): Promise<DemoRun> {
  const child = spawn(TSX, [MAIN], {
    cwd: workDir,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      PGLITE_PSQL_PORT: '0',
      LOG_LEVEL: 'info',
      DEMO_PRODUCTS: '24',
      EMBEDDING_MODEL_DIR: '',
      DATABASE_URL: 'postgres://must-not-be-used.invalid/x', // the demo always uses its own embedded database
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /^Storefront: (http:\/\/127\.0\.0\.1:\d+)\/$/m.exec(out);
      if (m) {
        clearInterval(timer);
        resolve({
          url: m[1]!,
          output: () => out,
          stop: async () => {
            child.kill('SIGTERM');
            const code = await exited;
            children.delete(child);
            return code;
          },
        });
      }
    }, 100);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`the demo exited (${code}) before printing its address:\n${out}`));
    });
  });
}

const logLines = (out: string) =>
  out.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as { msg?: string; [k: string]: unknown }];
    } catch {
      return [];
    }
  });

describe('npm run demo', () => {
  it('seeds a catalog once, serves the page, and names the stand-in model', async () => {
    const first = await startDemo();
    try {
      const page = await fetch(`${first.url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Lookalike');
      const res = await fetch(`${first.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          query:
            '{ embeddingModel { id } products(first: 1) { totalCount } similarProducts(image: { productId: "1" }, k: 3) { product { id } } }',
        }),
      });
      const body = (await res.json()) as {
        data: { embeddingModel: { id: string }; products: { totalCount: number }; similarProducts: Array<{ product: { id: string } }> };
      };
      expect(body.data.embeddingModel.id).toBe('vps/tiny-siglip-demo');
      expect(body.data.products.totalCount).toBe(24);
      expect(body.data.similarProducts[0]!.product.id).toBe('1');

      const out = first.output();
      expect(out).toMatch(/^Model: +vps\/tiny-siglip-demo — tiny stand-in model/m);
      expect(logLines(out).some((l) => l.msg === 'demo catalog seeded' && l.products === 24)).toBe(true);
      expect(logLines(out).some((l) => String(l.msg).startsWith('demo embedding model: tiny stand-in'))).toBe(true);
      expect(out).not.toMatch(/ADMIN_TOKEN|Bearer/); // the seeding token is never shown
      expect(fs.existsSync(path.join(workDir, '.cache', 'models', 'tiny-demo', 'config.json'))).toBe(true);
    } finally {
      expect(await first.stop()).toBe(0);
    }

    const second = await startDemo();
    try {
      const out = second.output();
      expect(logLines(out).some((l) => l.msg === 'demo catalog already seeded' && l.products === 24)).toBe(true);
      expect(logLines(out).some((l) => l.msg === 'demo catalog seeded')).toBe(false);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 180_000);
});
