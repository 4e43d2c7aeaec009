/**
 * Several photos per product over GraphQL (issue 22), with the real ONNX Runtime (tiny stand-in model):
 * ingest of ProductInput.images (labels, variants, regions), what an unchanged, reordered or removed
 * photo costs, all-or-nothing, Product.images (one statement for a page's photos), thumbnails per photo, and search that ranks a product by
 * its best photo and says which one matched.
 *
 * @backend ingest's per-photo transactions and the photos' rows on each backend
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import sharp from 'sharp';
import { randomBytes } from 'node:crypto';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { modelCachePath } from '../../src/hub/paths.js';
import { importCatalog } from '../../src/jobs/import.js';
import { JOB, REINDEX, sleep } from './reindex-support.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type GqlResponse, type TestService } from '../support/service.js';
import { countStatementsFrom } from '../support/statement-count.js';

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) {
  id sku imageSha256 thumbnailUrl images { id position label variant width height thumbnailUrl url regions { x y width height } } } }`;
const SIMILAR = `query($image: ImageInput!, $filter: ProductFilter, $k: Int, $n: Int) {
  similarProducts(image: $image, filter: $filter, k: $k, imagesPerProduct: $n) {
    score product { id sku } matchedImage { id position label variant } matchedRegion { x y width height }
    imageMatches { score image { id } region { x y width height } } } }`;

const b64 = (b: Buffer) => b.toString('base64');
let t: TestService;
const photos: Record<string, Buffer> = {};

beforeAll(async () => {
  t = await startTestService({ PRODUCT_MAX_IMAGES: '4' }, { model: await tinyModelDir() });
  for (const [name, shape, colour] of [
    ['front', 'circle', 'red'],
    ['back', 'square', 'blue'],
    ['detail', 'star', 'green'],
    ['other', 'triangle', 'orange'],
    ['filler1', 'ring', 'purple'],
    ['filler2', 'diamond', 'teal'],
  ] as const) {
    photos[name] = await renderProductImage(shape, colour, { size: 128 });
  }
  // A few products with one photo each, so that searches have others to rank.
  const fillers = ['filler1', 'filler2', 'other'].map((name, i) => ({
    sku: `F-${i}`,
    title: `Filler ${i}`,
    category: 'bags',
    image: { base64: b64(photos[name]!) },
  }));
  const res = await t.gql(UPSERT, { p: fillers }, { admin: true });
  expect(res.errors).toBeUndefined();
}, 180_000);
afterAll(() => t?.stop());

const bag = (images: unknown[]) => ({ sku: 'BAG-1', title: 'A bag of many photos', category: 'bags', images });
const vectorsOf = async (productId: string) =>
  (
    await sql<{ image_id: string; region: number; created_at: Date }>`
      SELECT image_id::text, region, created_at FROM product_embeddings WHERE product_id = ${productId} ORDER BY image_id, region`.execute(
      t.service.services.database.db,
    )
  ).rows;

describe('ingest of several photos', () => {
  let productId = '';
  let ids: string[] = [];

  it('stores the photos in order with label, variant and regions; one vector per photo and per region', async () => {
    const res = await t.gql(
      UPSERT,
      {
        p: [
          bag([
            { image: { base64: b64(photos.front!) }, label: 'front', variant: 'red' },
            { image: { base64: b64(photos.back!) }, label: 'back', regions: [{ x: 0.25, y: 0.25, width: 0.5, height: 0.5 }] },
            { image: { base64: b64(photos.detail!) }, label: 'detail', variant: 'green' },
          ]),
        ],
      },
      { admin: true },
    );
    expect(res.errors).toBeUndefined();
    const p = res.data.upsertProducts[0];
    productId = p.id;
    ids = p.images.map((i: any) => i.id);
    expect(p.images.map((i: any) => [i.position, i.label, i.variant])).toEqual([
      [0, 'front', 'red'],
      [1, 'back', null],
      [2, 'detail', 'green'],
    ]);
    expect(p.images[1].regions).toEqual([{ x: 0.25, y: 0.25, width: 0.5, height: 0.5 }]);
    expect(p.images[0]).toMatchObject({ width: 128, height: 128, thumbnailUrl: `/images/${ids[0]}/thumbnail.webp` });
    expect(p.thumbnailUrl).toMatch(new RegExp(`^/products/${productId}/thumbnail\\.webp\\?v=`));
    // 3 photos + 1 region.
    expect((await vectorsOf(productId)).map((v) => [v.image_id, v.region])).toEqual([
      [ids[0], 0],
      [ids[1], 0],
      [ids[1], 1],
      [ids[2], 0],
    ]);
  });

  it('serves each photo’s thumbnail at /images/<image id>/thumbnail.webp', async () => {
    for (const id of ids) {
      const res = await fetch(`${t.url}/images/${id}/thumbnail.webp`);
      expect(res.status).toBe(200);
      expect((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).format).toBe('webp');
    }
    const main = await fetch(`${t.url}/products/${productId}/thumbnail.webp`);
    expect(main.status).toBe(200);
  });

  it('re-embeds nothing for an unchanged list, and only moves photos for a reordered one', async () => {
    const vectors = await vectorsOf(productId);
    const same = await t.gql(
      UPSERT,
      {
        p: [
          bag([
            { image: { base64: b64(photos.detail!) }, label: 'detail', variant: 'green' },
            { image: { base64: b64(photos.front!) }, label: 'front (new label)', variant: 'red' },
            { image: { base64: b64(photos.back!) }, label: 'back', regions: [{ x: 0.25, y: 0.25, width: 0.5, height: 0.5 }] },
          ]),
        ],
      },
      { admin: true },
    );
    expect(same.errors).toBeUndefined();
    const p = same.data.upsertProducts[0];
    expect(p.images.map((i: any) => i.id)).toEqual([ids[2], ids[0], ids[1]]);
    expect(p.images.map((i: any) => i.position)).toEqual([0, 1, 2]);
    expect(p.images[1].label).toBe('front (new label)');
    // The same vector rows, written at the same instant: nothing was embedded again.
    expect(await vectorsOf(productId)).toEqual(vectors);
  });

  it('embeds a photo again when its regions change, and a removed photo takes its vectors', async () => {
    const res = await t.gql(
      UPSERT,
      {
        p: [
          bag([
            { image: { base64: b64(photos.front!) }, label: 'front', variant: 'red' },
            { image: { base64: b64(photos.back!) }, label: 'back', regions: [{ x: 0, y: 0, width: 0.5, height: 1 }] },
          ]),
        ],
      },
      { admin: true },
    );
    expect(res.errors).toBeUndefined();
    const got = res.data.upsertProducts[0].images.map((i: any) => i.id);
    expect(got[0]).toBe(ids[0]);
    expect(got[1]).not.toBe(ids[1]); // new regions: a new photo row
    const vectors = await vectorsOf(productId);
    expect(vectors.map((v) => [v.image_id, v.region])).toEqual([
      [ids[0], 0],
      [got[1], 0],
      [got[1], 1],
    ]);
    // The photos no longer given (detail, and back with its old regions) are gone, thumbnails too.
    for (const gone of [ids[1], ids[2]]) expect((await fetch(`${t.url}/images/${gone}/thumbnail.webp`)).status).toBe(404);
    ids = got;
  });

  it('is all or nothing: a bad photo anywhere leaves every product as it was', async () => {
    const before = await vectorsOf(productId);
    const res = await t.gql(
      UPSERT,
      {
        p: [
          bag([{ image: { base64: b64(photos.detail!) } }]),
          {
            sku: 'BAG-2',
            title: 'Bad',
            category: 'bags',
            images: [{ image: { base64: b64(photos.front!) } }, { image: { base64: 'bm90IGFuIGltYWdl' } }],
          },
        ],
      },
      { admin: true },
    );
    expect(codes(res)).toEqual(['INVALID_IMAGE']);
    expect(res.errors![0]!.message).toMatch(/products\[1\]\.images\[1\]/);
    expect(await vectorsOf(productId)).toEqual(before);
    const none = await t.gql(`{ products(filter: { category: "bags" }, first: 50) { edges { node { sku } } } }`);
    expect(none.data.products.edges.map((e: any) => e.node.sku)).not.toContain('BAG-2');
  });

  it('refuses too many photos, a bad region, and image with images, as BAD_USER_INPUT', async () => {
    const five = Array.from({ length: 5 }, () => ({ image: { base64: b64(photos.front!) } }));
    for (const p of [
      bag(five),
      bag([{ image: { base64: b64(photos.front!) }, regions: [{ x: 0.8, y: 0, width: 0.5, height: 0.5 }] }]),
      bag([{ image: { base64: b64(photos.front!) }, regions: [{ x: 0, y: 0, width: 0, height: 0.5 }] }]),
      { ...bag([{ image: { base64: b64(photos.front!) } }]), image: { base64: b64(photos.front!) } },
    ]) {
      const res = await t.gql(UPSERT, { p: [p] }, { admin: true });
      expect(codes(res)).toEqual(['BAD_USER_INPUT']);
    }
  });
});

describe('search by best photo', () => {
  it('finds the product by any of its photos, once, and names the photo that matched', async () => {
    const list = await t.gql(`{ products(first: 50) { edges { node { id sku images { id label } } } } }`);
    const bagNode = list.data.products.edges.map((e: any) => e.node).find((n: any) => n.sku === 'BAG-1');
    for (const img of bagNode.images) {
      const name = img.label === 'front' ? 'front' : 'back';
      const res = await t.gql(SIMILAR, { image: { base64: b64(photos[name]!) }, k: 4 });
      expect(res.errors).toBeUndefined();
      const matches = res.data.similarProducts;
      expect(matches[0].product.sku).toBe('BAG-1');
      expect(matches[0].matchedImage.id).toBe(img.id);
      expect(matches.filter((m: any) => m.product.sku === 'BAG-1')).toHaveLength(1);
      expect(new Set(matches.map((m: any) => m.product.id)).size).toBe(matches.length);
    }
  });

  it('names the matched photo when asked through fragments, and ranks the same without it', async () => {
    const image = { base64: b64(photos.back!) };
    const viaFragment = await t.gql(
      `query($image: ImageInput!) { similarProducts(image: $image, k: 4) { ...M } }
       fragment M on ProductMatch { score product { id } matchedImage { id label } }`,
      { image },
    );
    expect(viaFragment.errors).toBeUndefined();
    expect(viaFragment.data.similarProducts[0].matchedImage.label).toBe('back');
    const page = await t.gql(
      `query($image: ImageInput!) { similarProductsPage(image: $image, first: 4) {
         edges { node { ... on ProductMatch { matchedImage { id } } } } } }`,
      { image },
    );
    expect(page.errors).toBeUndefined();
    expect(page.data.similarProductsPage.edges.map((e: any) => e.node.matchedImage.id)).toEqual(
      viaFragment.data.similarProducts.map((m: any) => m.matchedImage.id),
    );
    // No matched photo asked for: the statement reads none (search/query.ts), and the answer is the same.
    const bare = await t.gql(`query($image: ImageInput!) { similarProducts(image: $image, k: 4) { score product { id } } }`, { image });
    expect(bare.errors).toBeUndefined();
    expect(bare.data.similarProducts).toEqual(viaFragment.data.similarProducts.map((m: any) => ({ score: m.score, product: m.product })));
  });

  it('lists the n best photos with imagesPerProduct, and restricts to a variant', async () => {
    const res = await t.gql(SIMILAR, { image: { base64: b64(photos.front!) }, k: 2, n: 2 });
    expect(res.errors).toBeUndefined();
    const top = res.data.similarProducts[0];
    expect(top.product.sku).toBe('BAG-1');
    expect(top.imageMatches).toHaveLength(2);
    expect(new Set(top.imageMatches.map((m: any) => m.image.id)).size).toBe(2);
    expect(top.imageMatches[0].score).toBeCloseTo(top.score, 5);

    const red = await t.gql(SIMILAR, { image: { base64: b64(photos.back!) }, k: 3, filter: { variant: 'red' } });
    expect(red.errors).toBeUndefined();
    expect(red.data.similarProducts.map((m: any) => [m.product.sku, m.matchedImage.variant])).toEqual([['BAG-1', 'red']]);
    const bad = await t.gql(SIMILAR, { image: { base64: b64(photos.back!) }, k: 3, n: 0 });
    expect(codes(bad)).toEqual(['BAD_USER_INPUT']);
  });
});

describe('Product.images without a statement per product', () => {
  // Products of their own (two photos each), so that the counts do not depend on the tests before.
  const own: string[] = [];
  beforeAll(async () => {
    const names = ['filler1', 'filler2', 'other', 'detail'] as const;
    const res = await t.gql(
      UPSERT,
      {
        p: names.map((name, i) => ({
          sku: `LIST-${i}`,
          title: `Listed ${i}`,
          category: 'listed',
          images: [{ image: { base64: b64(photos[name]!) } }, { image: { base64: b64(photos[names[(i + 1) % names.length]!]!) } }],
        })),
      },
      { admin: true },
    );
    expect(res.errors).toBeUndefined();
    own.push(...res.data!.upsertProducts.map((p: { id: string }) => p.id));
  });
  afterAll(async () => {
    for (const id of own) await t.gql(`mutation($id: ID!) { deleteProduct(id: $id) }`, { id }, { admin: true });
  });

  it('reads the photos of a whole page of products with one statement', async () => {
    let res: GqlResponse<any> | undefined;
    const statements = await countStatementsFrom(t, 'product_images', async () => {
      res = await t.gql(`{ products(first: 50, filter: { category: "listed" }) { edges { node { sku images { id position } } } } }`);
    });
    expect(res!.errors).toBeUndefined();
    const nodes = res!.data.products.edges.map((e: any) => e.node);
    expect(nodes).toHaveLength(4); // a statement per product would be 4
    for (const n of nodes) expect(n.images.map((i: any) => i.position)).toEqual([0, 1]);
    expect(statements).toBe(1);
  });

  it("reads the photos of every match of a search with one statement, each product's own", async () => {
    let res: GqlResponse<any> | undefined;
    const statements = await countStatementsFrom(t, 'product_images', async () => {
      res = await t.gql(
        `query($image: ImageInput!) { similarProducts(image: $image, k: 4, filter: { category: "listed" }) {
          product { id sku images { id } } matchedImage { id } } }`,
        { image: { base64: b64(photos.filler1!) } },
      );
    });
    expect(res!.errors).toBeUndefined();
    const matches = res!.data.similarProducts;
    expect(matches).toHaveLength(4);
    // The matched photo is one of its own product's photos: the batch hands each product its own list.
    for (const m of matches) expect(m.product.images.map((i: any) => i.id)).toContain(m.matchedImage.id);
    expect(statements).toBe(1);
  });
});

describe('a region of the query photo', () => {
  it('crops the query before embedding: each half of a two-product photo finds its product', async () => {
    // A street photo holding two products side by side: the bag's front photo left, another product right.
    const scene = await sharp({ create: { width: 256, height: 128, channels: 3, background: '#ffffff' } })
      .composite([
        { input: photos.front!, left: 0, top: 0 },
        { input: photos.other!, left: 128, top: 0 },
      ])
      .png()
      .toBuffer();
    const query = `query($image: ImageInput!, $region: RegionInput) { similarProducts(image: $image, region: $region, k: 1) { product { sku } } }`;
    const left = await t.gql(query, { image: { base64: b64(scene) }, region: { x: 0, y: 0, width: 0.5, height: 1 } });
    const right = await t.gql(query, { image: { base64: b64(scene) }, region: { x: 0.5, y: 0, width: 0.5, height: 1 } });
    expect(left.errors).toBeUndefined();
    expect(left.data.similarProducts[0].product.sku).toBe('BAG-1');
    expect(right.data.similarProducts[0].product.sku).toBe('F-2');
    const outside = await t.gql(query, { image: { base64: b64(scene) }, region: { x: 0.6, y: 0, width: 0.5, height: 1 } });
    expect(codes(outside)).toEqual(['BAD_USER_INPUT']);
  });
});

describe('import with several photos per product', () => {
  it('takes an images list (JSON Lines) and numbered image columns (CSV), in order, with labels and regions', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-photos-import-'));
    try {
      for (const name of ['front', 'back', 'detail']) await fs.writeFile(path.join(dir, `${name}.png`), photos[name]!);
      const jsonl = path.join(dir, 'catalog.jsonl');
      await fs.writeFile(
        jsonl,
        JSON.stringify({
          sku: 'IMP-1',
          title: 'Imported',
          category: 'imported',
          images: [
            'front.png',
            { path: 'back.png', label: 'back', variant: 'blue', regions: [{ x: 0.1, y: 0.1, width: 0.5, height: 0.5 }] },
          ],
        }) + '\n',
      );
      const csv = path.join(dir, 'catalog.csv');
      await fs.writeFile(csv, 'sku,title,category,image,image_2,image_3\nIMP-2,Imported 2,imported,detail.png,front.png,back.png\n');
      const s = t.service.services;
      const ctx = { db: s.database.db, models: s.models, fetchOptions: s.fetchOptions, imageLimits: s.imageLimits, maxImagesPerProduct: 4 };
      expect(await importCatalog(ctx, { file: jsonl, batchSize: 10 })).toMatchObject({ imported: 1, failed: 0 });
      expect(await importCatalog(ctx, { file: csv, batchSize: 10 })).toMatchObject({ imported: 1, failed: 0 });
      const res = await t.gql(
        `{ products(filter: { category: "imported" }) { edges { node { sku images { position label variant regions { x } } } } } }`,
      );
      const bySku = Object.fromEntries(res.data.products.edges.map((e: any) => [e.node.sku, e.node.images]));
      expect(bySku['IMP-1']).toEqual([
        { position: 0, label: null, variant: null, regions: [] },
        { position: 1, label: 'back', variant: 'blue', regions: [{ x: 0.1 }] },
      ]);
      expect(bySku['IMP-2'].map((i: any) => i.position)).toEqual([0, 1, 2]);
      const vectors = await sql<{ n: string }>`
        SELECT count(*)::text AS n FROM product_embeddings e JOIN products p ON p.id = e.product_id WHERE p.category = 'imported'`.execute(
        s.database.db,
      );
      expect(Number(vectors.rows[0]!.n)).toBe(2 + 1 + 3); // two photos and a region, three photos
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('reindex of a catalog with several photos', () => {
  it('embeds every photo and every region for the new model, then search by it names the photo', async () => {
    const db = t.service.services.database.db;
    const id = `vps/photos-b-${randomBytes(3).toString('hex')}`;
    const dir = modelCachePath(id);
    await fs.mkdir(dir, { recursive: true });
    try {
      await writeTinyModel(dir, { dimension: 24, modelId: id, seed: 41 });
      const started = await t.gql(REINDEX, { model: id }, { admin: true });
      expect(started.errors).toBeUndefined();
      let job: { state: string; activated: boolean; processed: number } | undefined;
      for (let i = 0; i < 600; i++) {
        job = (await t.gql(JOB, { id: started.data.reindex.id }, { admin: true })).data.reindexJob;
        if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job!.state)) break;
        await sleep(100);
      }
      expect(job).toMatchObject({ state: 'SUCCEEDED', activated: true });
      const photosStored = await sql<{ n: string; regions: string }>`
        SELECT count(*)::text AS n, sum(jsonb_array_length(regions))::text AS regions FROM product_images`.execute(db);
      expect(job!.processed).toBe(Number(photosStored.rows[0]!.n)); // progress counts photos
      // The same (photo, region) pairs for both models: every photo whole and each of its regions.
      const pairs = await sql<{ model_id: string; pairs: string[] }>`
        SELECT model_id, array_agg(image_id || ':' || region ORDER BY image_id, region) AS pairs
        FROM product_embeddings WHERE image_id IS NOT NULL GROUP BY model_id`.execute(db);
      expect(pairs.rows).toHaveLength(2);
      expect(pairs.rows[0]!.pairs).toEqual(pairs.rows[1]!.pairs);
      expect(pairs.rows[0]!.pairs).toHaveLength(Number(photosStored.rows[0]!.n) + Number(photosStored.rows[0]!.regions));
      // The job's coverage says the same in products, photos and vectors (regions included).
      const coverage = (
        await t.gql(
          `query($id: ID!) { reindexJob(id: $id) { coverage { products productsEmbedded photos photosEmbedded vectors } } }`,
          { id: started.data.reindex.id },
          { admin: true },
        )
      ).data.reindexJob.coverage;
      const products = await sql<{ n: string }>`SELECT count(DISTINCT product_id)::text AS n FROM product_images`.execute(db);
      expect(coverage).toEqual({
        products: Number(products.rows[0]!.n),
        productsEmbedded: Number(products.rows[0]!.n),
        photos: Number(photosStored.rows[0]!.n),
        photosEmbedded: Number(photosStored.rows[0]!.n),
        vectors: Number(photosStored.rows[0]!.n) + Number(photosStored.rows[0]!.regions),
      });
      expect(coverage.photos).toBeGreaterThan(coverage.products); // several photos per product: the counts differ
      const res = await t.gql(SIMILAR, { image: { base64: b64(photos.front!) }, k: 3 });
      expect(res.errors).toBeUndefined();
      expect(res.data.similarProducts[0].matchedImage).not.toBeNull();
      expect(new Set(res.data.similarProducts.map((m: any) => m.product.id)).size).toBe(res.data.similarProducts.length);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
