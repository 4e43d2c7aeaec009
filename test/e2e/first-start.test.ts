/**
 * The first start a real user makes: `npm start` with nothing configured, the default model
 * (onnx-community/siglip2-base-patch16-224-ONNX) already in the Hugging Face hub cache as huggingface_hub
 * lays it out (blobs named by hash, snapshots/<commit>/ of relative symlinks, refs/main), offline. The
 * snapshot holds the checkpoint's own JSON files (test/fixtures/models/siglip2-base-patch16-224: the
 * short-form config.json that names no hidden_size) and graphs in the export's layout; the service must
 * start, serve image and text search from it, and give matchProbability (the default model's published
 * calibration). Then the same through `vps model fetch` from a local imitation of the hub's endpoints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSiglipVisionModel } from '../../scripts/models/siglip-vision.js';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { layOutAsHuggingfaceHub, startHub, type Hub } from '../unit/hub/hub-imitation.js';
import { vpsArgs } from '../support/vps-command.js';

const DEFAULT_REPO = 'onnx-community/siglip2-base-patch16-224-ONNX';
const COMMIT = 'b'.repeat(40);
const TOKEN = 'first-start-admin-token-123';
const children: ChildProcess[] = [];
const dirs: string[] = [];
const temp = async (prefix: string) => {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};

let model: string;
beforeAll(async () => {
  // the export's layout with every variant (fp32, _fp16, _quantized, _int8, _uint8), one encoder layer
  // (the real tower's width, so the published config's defaults describe it), and the published JSON
  model = await temp('vps-first-model-');
  await writeSiglipVisionModel(model, { layers: 1 });
  await copyFile(join('test/fixtures/models/siglip2-base-patch16-224', 'config.json'), join(model, 'config.json'));
}, 120_000);
afterAll(async () => {
  children.forEach((c) => c.kill('SIGKILL'));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function run(args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, vpsArgs(...args), {
    env: { ...process.env, LOG_LEVEL: 'info', ...env, EMBEDDING_MODEL_DIR: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise((r) => child.on('exit', (code) => r(code))) };
}

async function serve(cache: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const p = run(['serve'], {
    HF_HUB_CACHE: cache,
    HF_HUB_OFFLINE: '1',
    DATA_DIR: await temp('vps-first-data-'),
    PORT: '0',
    PGLITE_PSQL_PORT: '0',
    ADMIN_TOKEN: TOKEN,
    EMBEDDING_THREADS: '1',
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the service did not start:\n${p.output()}`)), 150_000);
    const poll = setInterval(() => {
      const m = /GraphQL:\s+(http:\/\/\S+)\/graphql/.exec(p.output());
      if (m) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve(m[1]!);
      }
    }, 100);
    void p.exited.then(() => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`the service exited:\n${p.output()}`));
    });
  });
  return {
    url,
    stop: async () => {
      p.child.kill('SIGTERM');
      await p.exited;
    },
  };
}

async function gql(url: string, query: string, variables: object = {}) {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: any; errors?: { message: string; extensions?: { code?: string } }[] };
}

/** Ready, with the default model: a catalog of three photos, then image search, and text search with probabilities. */
async function searchWorks(url: string): Promise<void> {
  const ready = (await (await fetch(`${url}/readyz`)).json()) as { model?: { id?: string } | string };
  expect(JSON.stringify(ready)).toContain(DEFAULT_REPO);
  const shapes = [
    ['circle', 'red'],
    ['square', 'blue'],
    ['triangle', 'green'],
  ] as const;
  const products = await Promise.all(
    shapes.map(async ([shape, colour], i) => ({
      sku: `FIRST-${i}`,
      title: `${colour} ${shape}`,
      category: 'bags',
      image: { base64: (await renderProductImage(shape, colour, { size: 96 })).toString('base64') },
    })),
  );
  const up = await gql(url, 'mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { sku } }', { p: products });
  expect(up.errors).toBeUndefined();
  const byImage = await gql(
    url,
    'query($b: String!) { similarProducts(image: { base64: $b }, k: 3) { score matchProbability product { sku } } }',
    {
      b: products[1]!.image.base64,
    },
  );
  expect(byImage.errors).toBeUndefined();
  expect(byImage.data.similarProducts[0].product.sku).toBe('FIRST-1');
  expect(byImage.data.similarProducts[0].matchProbability).toBeNull(); // calibrated for text→image only
  const byText = await gql(url, '{ searchProducts(text: "a blue square", k: 3) { matchProbability product { sku } } }');
  expect(byText.errors).toBeUndefined();
  expect(byText.data.searchProducts).toHaveLength(3);
  // the checkpoint's own calibration (published: logit_scale 4.7245, bias −16.77), though the export carries none
  for (const m of byText.data.searchProducts) expect(m.matchProbability).toEqual(expect.any(Number));
}

describe('the first start with the hub’s real checkpoint form', () => {
  it('serves image and text search from the default model in a huggingface_hub cache, offline', { timeout: 300_000 }, async () => {
    const cache = await temp('vps-first-hub-');
    await layOutAsHuggingfaceHub(model, cache, DEFAULT_REPO, COMMIT);
    const service = await serve(cache);
    try {
      await searchWorks(service.url);
    } finally {
      await service.stop();
    }
  });

  it('does the same after `vps model fetch` from a hub-compatible server (HF_ENDPOINT)', { timeout: 300_000 }, async () => {
    let hub: Hub | undefined;
    try {
      hub = await startHub(model, DEFAULT_REPO);
      const cache = await temp('vps-first-fetch-');
      const fetchCmd = run(['model', 'fetch'], { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url });
      expect(await fetchCmd.exited, fetchCmd.output()).toBe(0);
      expect(fetchCmd.output()).toContain(join(cache, 'models--onnx-community--siglip2-base-patch16-224-ONNX', 'snapshots'));
      const service = await serve(cache);
      try {
        await searchWorks(service.url);
      } finally {
        await service.stop();
      }
    } finally {
      hub?.server.close();
    }
  });
});
