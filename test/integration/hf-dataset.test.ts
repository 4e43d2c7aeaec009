/**
 * `vps import hf://datasets/…` against a local imitation of the hub's dataset endpoints:
 *   GET /api/datasets/<repo>/parquet        → {config: {split: [file URLs]}}
 *   GET /api/datasets/<repo>/parquet/…/N.parquet → the Parquet bytes (written here with hyparquet-writer)
 * The rows have the columns of ceyda/fashion-products-small (image as {bytes, path}); one image is not an
 * image and must land in the per-row error report while the others are imported with the default mapping.
 */
import fs from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { importHfDataset, parseHfDataset, parseMapping } from '../../src/jobs/hf-dataset.js';
import { startTestService, tinyModelDir, type TestService } from '../support/service.js';

const REPO = 'acme/fashion-mini';
let t: TestService;
let hub: { url: string; server: Server; requests: string[] };
let work: string;

async function fashionParquet(): Promise<Buffer> {
  const red = await renderProductImage('circle', 'red', { size: 64 });
  const blue = await renderProductImage('square', 'blue', { size: 64 });
  const schema = [
    { name: 'root', num_children: 6 },
    { name: 'id', type: 'INT64' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'gender', type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'articleType', type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'baseColour', type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'productDisplayName', type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'image', repetition_type: 'OPTIONAL' as const, num_children: 2 },
    { name: 'bytes', type: 'BYTE_ARRAY' as const, repetition_type: 'OPTIONAL' as const },
    { name: 'path', type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const },
  ];
  const buf = parquetWriteBuffer({
    schema,
    columnData: [
      { name: 'id', data: [15970n, 39386n, 59263n] },
      { name: 'gender', data: ['Men', 'Women', 'Women'] },
      { name: 'articleType', data: ['Shirts', 'Jeans', 'Watches'] },
      { name: 'baseColour', data: ['Red', 'Blue', 'Silver'] },
      { name: 'productDisplayName', data: ['Turtle Check Men Red Shirt', 'Peter England Women Blue Jeans', 'Titan Women Silver Watch'] },
      {
        name: 'image',
        data: [
          { bytes: new Uint8Array(red), path: '15970.jpg' },
          { bytes: new Uint8Array(blue), path: '39386.jpg' },
          { bytes: new Uint8Array([1, 2, 3, 4]), path: 'x.jpg' },
        ],
      },
    ],
  });
  return Buffer.from(buf);
}

beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-hfds-'));
  const parquet = await fashionParquet();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === `/api/datasets/${REPO}/parquet`) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ default: { train: [`${base}/api/datasets/${REPO}/parquet/default/train/0.parquet`] } }));
    } else if (req.url === `/api/datasets/${REPO}/parquet/default/train/0.parquet`) {
      res.setHeader('content-length', String(parquet.length));
      res.end(parquet);
    } else {
      res.statusCode = 404;
      res.end('{"error":"not found"}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, requests };
}, 120_000);
afterAll(async () => {
  await t?.stop();
  hub?.server.closeAllConnections();
  hub?.server.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('hf://datasets import', () => {
  it('parses references and mappings', () => {
    expect(parseHfDataset('hf://datasets/ceyda/fashion-products-small')).toEqual({
      repo: 'ceyda/fashion-products-small',
      revision: 'main',
    });
    expect(() => parseHfDataset('hf://models/x/y')).toThrow(/dataset reference/);
    expect(parseMapping('title=name, category=masterCategory')).toEqual({ title: 'name', category: 'masterCategory' });
    expect(() => parseMapping('colour=baseColour')).toThrow(/--map/);
  });

  it('imports the rows with the default mapping, reports the row whose image is broken, and does not download twice', async () => {
    const opts = { source: `hf://datasets/${REPO}`, hubUrl: hub.url, workDir: work, batchSize: 2 };
    const result = await importHfDataset(t.service.services.ingest, opts);
    expect(result).toMatchObject({ rows: 3, imported: 2, failed: 1, split: 'train' });
    const report = (await fs.readFile(result.reportFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { sku: string });
    expect(report).toHaveLength(1);
    expect(report[0]!.sku).toBe('fashion-mini-59263');

    const res = await t.gql(`{ products(first: 10) { edges { node { sku title category attributes } } } }`);
    expect(res.errors).toBeUndefined();
    const nodes = (res.data.products.edges as Array<{ node: { sku: string } }>).map((e) => e.node);
    expect(nodes.map((n) => n.sku).sort()).toEqual(['fashion-mini-15970', 'fashion-mini-39386']);
    expect(nodes.find((n) => n.sku === 'fashion-mini-15970')).toMatchObject({
      title: 'Turtle Check Men Red Shirt',
      category: 'Shirts',
      attributes: { gender: 'Men', baseColour: 'Red' },
    });
    const similar = await t.gql(`query($i: ImageInput!) { similarProducts(image: $i, k: 1) { product { sku } } }`, {
      i: { base64: (await renderProductImage('square', 'blue', { size: 64 })).toString('base64') },
    });
    expect(similar.data.similarProducts[0].product.sku).toBe('fashion-mini-39386');

    const downloads = () => hub.requests.filter((u) => u.endsWith('.parquet')).length;
    expect(downloads()).toBe(1);
    const again = await importHfDataset(t.service.services.ingest, opts);
    expect(again).toMatchObject({ rows: 3, imported: 2, failed: 1 });
    expect(downloads()).toBe(1);
  });

  it('names a missing mapping column and an unknown dataset clearly', async () => {
    await expect(
      importHfDataset(t.service.services.ingest, {
        source: `hf://datasets/${REPO}`,
        hubUrl: hub.url,
        workDir: await fs.mkdtemp(path.join(work, 'm-')),
        batchSize: 10,
        mapping: { title: 'nope' },
      }),
    ).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/--map title=nope: no such column/) });
    await expect(
      importHfDataset(t.service.services.ingest, { source: 'hf://datasets/acme/absent', hubUrl: hub.url, workDir: work, batchSize: 10 }),
    ).rejects.toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(/HTTP 404/) });
  });
});
