/**
 * @backend upserts, deletes and pages in SQL
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, type TestService } from '../support/service.js';

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku title category brand price currency inStock attributes imageUrl createdAt updatedAt } }`;
const UPSERT_WITH_IMAGE = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id title imageSha256 thumbnailUrl } }`;
const LIST = `query($f: ProductFilter, $first: Int, $after: String) {
  products(filter: $f, first: $first, after: $after) { totalCount edges { cursor node { id sku price } } pageInfo { hasNextPage endCursor } } }`;

const product = (i: number, over: Record<string, unknown> = {}) => ({
  sku: `SKU-${String(i).padStart(3, '0')}`,
  title: `Product ${i}`,
  category: ['bags', 'shoes', 'hats'][i % 3],
  brand: i % 2 ? 'Acme' : 'Globex',
  price: 10 + i,
  currency: 'EUR',
  inStock: i % 4 !== 0,
  attributes: { colour: i % 2 ? 'red' : 'blue' },
  ...over,
});

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(() => t?.stop());

describe('catalog over GraphQL', () => {
  it('upserts by sku and reads products back', async () => {
    const res = await t.gql(UPSERT, { p: Array.from({ length: 30 }, (_, i) => product(i)) }, { admin: true });
    expect(res.errors).toBeUndefined();
    expect(res.data.upsertProducts).toHaveLength(30);
    const first = res.data.upsertProducts[0];
    expect(first).toMatchObject({
      sku: 'SKU-000',
      category: 'bags',
      price: 10,
      currency: 'EUR',
      inStock: false,
      attributes: { colour: 'blue' },
    });

    const one = await t.gql(`query($id: ID!) { product(id: $id) { sku title } }`, { id: first.id });
    expect(one.data.product).toEqual({ sku: 'SKU-000', title: 'Product 0' });
    const none = await t.gql(`{ a: product(id: "999999") { id } b: product(id: "not-an-id") { id } }`);
    expect(none.data).toEqual({ a: null, b: null });
  });

  it('updates an existing sku in place, keeping its id and creation time', async () => {
    const before = await t.gql(LIST, { f: { category: 'bags' }, first: 1 });
    const id = before.data.products.edges[0].node.id;
    const res = await t.gql(UPSERT, { p: [product(0, { title: 'Renamed', price: 99.5 })] }, { admin: true });
    const after = res.data.upsertProducts[0];
    expect(after.id).toBe(id);
    expect(after.title).toBe('Renamed');
    expect(after.price).toBe(99.5);
    expect(new Date(after.updatedAt).getTime()).toBeGreaterThan(new Date(after.createdAt).getTime());
  });

  it('pages through all products in a stable order with cursors', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const res: any = await t.gql(LIST, { first: 7, after });
      expect(res.errors).toBeUndefined();
      expect(res.data.products.totalCount).toBe(30);
      seen.push(...res.data.products.edges.map((e: any) => e.node.sku));
      pages++;
      if (!res.data.products.pageInfo.hasNextPage) break;
      after = res.data.products.pageInfo.endCursor;
    }
    expect(pages).toBe(5);
    expect(seen).toHaveLength(30);
    expect(new Set(seen).size).toBe(30);
    expect(seen).toEqual([...seen].sort());
  });

  it('applies every filter, combined with AND', async () => {
    const skus = async (f: Record<string, unknown>) =>
      ((await t.gql(LIST, { f, first: 100 })).data.products.edges as any[]).map((e) => e.node.sku);
    expect(await skus({ category: 'hats' })).toHaveLength(10);
    expect(await skus({ categories: ['hats', 'shoes'] })).toHaveLength(20);
    expect(await skus({ categories: [] })).toHaveLength(0);
    expect(await skus({ brand: 'Acme', category: 'shoes' })).toEqual(['SKU-001', 'SKU-007', 'SKU-013', 'SKU-019', 'SKU-025']);
    expect(await skus({ minPrice: 20, maxPrice: 22 })).toEqual(['SKU-010', 'SKU-011', 'SKU-012']);
    const inStock = await skus({ inStock: false });
    expect(inStock).toEqual(['SKU-000', 'SKU-004', 'SKU-008', 'SKU-012', 'SKU-016', 'SKU-020', 'SKU-024', 'SKU-028']);
    const count = await t.gql(`query($f: ProductFilter) { products(filter: $f) { totalCount } }`, {
      f: { category: 'hats', inStock: true },
    });
    expect(count.data.products.totalCount).toBe(8);
  });

  it('deletes a product', async () => {
    const res = await t.gql(UPSERT, { p: [product(100)] }, { admin: true });
    const id = res.data.upsertProducts[0].id;
    const del = await t.gql(`mutation($id: ID!) { deleteProduct(id: $id) }`, { id }, { admin: true });
    expect(del.data.deleteProduct).toBe(true);
    const again = await t.gql(`mutation($id: ID!) { deleteProduct(id: $id) }`, { id }, { admin: true });
    expect(again.data.deleteProduct).toBe(false);
    expect((await t.gql(`query($id: ID!) { product(id: $id) { id } }`, { id })).data.product).toBeNull();
  });

  it('stores an image with its thumbnail, and keeps it when an upsert gives none', async () => {
    const png = await renderProductImage('star', 'teal', { size: 64 });
    const first = await t.gql(UPSERT_WITH_IMAGE, { p: [product(200, { image: { base64: png.toString('base64') } })] }, { admin: true });
    expect(first.errors).toBeUndefined();
    const sha = createHash('sha256').update(png).digest('hex');
    expect(first.data.upsertProducts[0]).toMatchObject({
      imageSha256: sha,
      thumbnailUrl: expect.stringMatching(/^\/products\/\d+\/thumbnail\.webp/),
    });
    const res = await t.gql(UPSERT_WITH_IMAGE, { p: [product(200, { title: 'No image given' })] }, { admin: true });
    expect(res.data.upsertProducts[0]).toMatchObject({ title: 'No image given', imageSha256: sha });

    const thumb = await fetch(`${t.url}${res.data.upsertProducts[0].thumbnailUrl}`);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/webp');
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 64, height: 64 });
    expect((await fetch(`${t.url}/images/999999/thumbnail.webp`)).status).toBe(404);
  });
});

describe('admin authentication', () => {
  it('refuses mutations without the admin token', async () => {
    const none = await t.gql(UPSERT, { p: [product(300)] });
    expect(codes(none)).toEqual(['UNAUTHENTICATED']);
    const wrong = await t.gql(UPSERT, { p: [product(300)] }, { headers: { authorization: 'Bearer wrong-token-wrong-token-x' } });
    expect(codes(wrong)).toEqual(['UNAUTHENTICATED']);
    const list = await t.gql(LIST, { f: { category: 'bags' }, first: 500 });
    expect(list.data.products.edges.map((e: any) => e.node.sku)).not.toContain('SKU-300');
  });

  it('disables admin operations when no token is configured', async () => {
    const noAdmin = await startTestService({ ADMIN_TOKEN: '' });
    try {
      const res = await noAdmin.gql(UPSERT, { p: [product(1)] }, { headers: { authorization: 'Bearer anything-at-all-here' } });
      expect(codes(res)).toEqual(['ADMIN_DISABLED']);
      expect(res.errors![0]!.message).toMatch(/ADMIN_TOKEN/);
    } finally {
      await noAdmin.stop();
    }
  });
});

describe('bad input gets BAD_USER_INPUT and writes nothing', () => {
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['minPrice > maxPrice', LIST, { f: { minPrice: 10, maxPrice: 5 } }],
    ['first over 500', LIST, { first: 501 }],
    ['first zero', LIST, { first: 0 }],
    ['malformed cursor', LIST, { after: 'not-a-cursor' }],
    ['forged cursor', LIST, { after: Buffer.from('product:abc').toString('base64url') }],
  ];
  it.each(cases)('%s', async (_name, query, variables) => {
    const res = await t.gql(query, variables);
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
  });

  const writes: Array<[string, unknown[]]> = [
    ['duplicate skus in one call', [product(400), product(400)]],
    ['image with zero fields', [product(401, { image: {} })]],
    ['image with two fields', [product(402, { image: { url: 'https://example.com/a.png', base64: 'iVBORw0KGgo=' } })]],
    ['image by productId', [product(403, { image: { productId: '1' } })]],
    ['non-http image url', [product(404, { image: { url: 'file:///etc/passwd' } })]],
    ['oversized title', [product(405, { title: 'x'.repeat(501) })]],
    ['oversized description', [product(406, { description: 'x'.repeat(10_001) })]],
    ['empty sku', [product(407, { sku: '   ' })]],
    ['bad currency', [product(408, { currency: 'euro' })]],
    ['negative price', [product(409, { price: -1 })]],
    ['three decimals', [product(410, { price: 1.234 })]],
    ['attributes not an object', [product(411, { attributes: [1, 2] })]],
    ['empty list', []],
    ['a valid product then an invalid one', [product(412), product(413, { category: '' })]],
  ];
  it.each(writes)('%s', async (_name, p) => {
    const before = (await t.gql(LIST, {})).data.products.totalCount;
    const res = await t.gql(UPSERT, { p }, { admin: true });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
    expect(res.errors![0]!.message.length).toBeGreaterThan(10);
    expect((await t.gql(LIST, {})).data.products.totalCount).toBe(before);
  });

  it('rejects a wrong argument type through GraphQL validation', async () => {
    const res = await t.gql(`{ products(first: "ten") { totalCount } }`);
    expect(res.status).toBe(400);
    expect(codes(res)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });
});

describe('HTTP surface', () => {
  it('answers health and readiness', async () => {
    expect(await (await fetch(`${t.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { database: 'ok', migrations: 'ok' } });
  });

  it('blocks simple cross-site GET requests (CSRF prevention)', async () => {
    const res = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ products { totalCount } }')}`);
    expect(res.status).toBe(400);
    const ok = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ products { totalCount } }')}`, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    expect(ok.status).toBe(200);
  });

  it('limits aliases per query', async () => {
    const aliases = Array.from({ length: 40 }, (_, i) => `a${i}: products(first: 1) { totalCount }`).join(' ');
    const res = await t.gql(`{ ${aliases} }`);
    expect(res.errors?.[0]?.message).toMatch(/alias/i);
  });

  it('refuses request bodies over the limit', async () => {
    const small = await startTestService({ HTTP_BODY_LIMIT_BYTES: '2048' });
    try {
      const res = await fetch(`${small.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ products { totalCount } }', variables: { pad: 'x'.repeat(4096) } }),
      });
      expect(res.status).toBe(413);
    } finally {
      await small.stop();
    }
  });
});
