/** Shared by the reindex tests: two distinguishable tiny models, a catalog with images, the service as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { modelCachePath } from '../../src/hub/paths.js';
import { renderProductImage, syntheticCatalog, type SyntheticProduct } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN } from '../support/service.js';
import { vpsArgs } from '../support/vps-command.js';

/** Model A: the one the service starts with (directory), 32-d. */
export async function writeModelA(): Promise<{ dir: string; id: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-model-a-'));
  const id = `vps/tiny-a-${randomBytes(3).toString('hex')}`;
  await writeTinyModel(dir, { dimension: 32, modelId: id, seed: 11 });
  return { dir, id };
}

/** Model B: another tiny model (48-d, other weights), placed in the model cache so reindex(model:) finds it. */
export async function writeCachedModel(dimension = 48, seed = 22): Promise<{ dir: string; id: string }> {
  const id = `vps/tiny-b-${randomBytes(3).toString('hex')}`;
  const dir = modelCachePath(id);
  await fs.mkdir(dir, { recursive: true });
  await writeTinyModel(dir, { dimension, modelId: id, seed });
  return { dir, id };
}

/**
 * `photos` > 1: each product gets that many photos (views at other sizes, the last with a region around
 * its middle, so the catalog has region vectors too) instead of the single `image`.
 */
export async function catalogInputs(n: number, seed = 5, skuPrefix = 'R', photos = 1): Promise<Array<Record<string, unknown>>> {
  const cat = syntheticCatalog(n, seed);
  const view = async (p: SyntheticProduct, j: number) => ({
    image: { base64: (await renderProductImage(p.shape, p.colour, { size: 64 + 16 * j })).toString('base64') },
    label: `view ${j}`,
    ...(j === photos - 1 ? { regions: [{ x: 0.25, y: 0.25, width: 0.5, height: 0.5 }] } : {}),
  });
  return Promise.all(
    cat.map(async (p: SyntheticProduct, i) => ({
      sku: `${skuPrefix}-${String(i).padStart(5, '0')}`,
      title: p.title,
      category: p.category,
      brand: p.brand,
      price: p.price,
      currency: p.currency,
      inStock: p.inStock,
      ...(photos > 1
        ? { images: await Promise.all(Array.from({ length: photos }, (_, j) => view(p, j))) }
        : { image: { base64: (await renderProductImage(p.shape, p.colour, { size: 64 })).toString('base64') } }),
    })),
  );
}

export const REINDEX = `mutation($model: String, $onlyMissing: Boolean, $activate: Boolean) {
  reindex(model: $model, onlyMissing: $onlyMissing, activate: $activate) { id model state processed total } }`;
export const JOB = `query($id: ID!) { reindexJob(id: $id) { id model state processed total failed rate etaSeconds error activated attempts errors { productId sku message } } }`;
export const MODELS = `{ models { id dimension status active loaded vectors } }`;
export const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
export const SIMILAR = `query($image: ImageInput!, $k: Int) { similarProducts(image: $image, k: $k) { score product { id } } }`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Child {
  proc: ChildProcess;
  gql(query: string, variables?: Record<string, unknown>): Promise<any>;
}

/**
 * `vps serve` as a child process (so that a test can SIGKILL it), on the given PostgreSQL URL or, without
 * one, on the embedded database in dataDir; resolves once it prints its GraphQL URL. `children` tracks the
 * live ones for the file's cleanup.
 */
export async function startServiceChild(
  o: { modelDir: string; databaseUrl: string | null; dataDir: string | null; env?: Record<string, string> },
  children: Set<ChildProcess>,
): Promise<Child> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ADMIN_TOKEN,
    EMBEDDING_MODEL_DIR: o.modelDir,
    REINDEX_BATCH_SIZE: '4',
    REINDEX_THROTTLE_MS: '100',
    REINDEX_LEASE_SECONDS: '2',
    JOBS_POLL_INTERVAL_MS: '500',
    PGLITE_PSQL_PORT: '0',
    ...o.env,
  };
  delete env.DATABASE_URL;
  if (o.databaseUrl) env.DATABASE_URL = o.databaseUrl;
  else env.DATA_DIR = o.dataDir!;
  const proc = spawn(process.execPath, vpsArgs('serve'), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /GraphQL:\s+(http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`service exited with ${code}:\n${out}`)));
  });
  return {
    proc,
    async gql(query, variables) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ query, variables }),
      });
      return res.json();
    },
  };
}
