/**
 * Search end to end over HTTP with the real ONNX Runtime (tiny stand-in model) and a real database:
 * a generated catalog is ingested over GraphQL, then queried with shoppers' photos (perturbed
 * copies), by product and by text, with filters, k, ordering and minScore.
 *
 * @backend the search statements on each backend's PostgreSQL and pgvector build
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  perturb,
  renderProductImage,
  syntheticCatalog,
  type Perturbation,
  type SyntheticProduct,
} from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { installLoopbackTripwire } from '../unit/images/loopback-tripwire.js';

const N = 80; // 8 shapes × 10 colours: 80 distinct looks
const catalog = syntheticCatalog(N, 7);
const images = new Map<string, Buffer>();
const ids = new Map<string, string>(); // sku → id

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku imageSha256 } }`;
const SIMILAR = `query($image: ImageInput!, $category: String, $filter: ProductFilter, $k: Int, $minScore: Float) {
  similarProducts(image: $image, category: $category, filter: $filter, k: $k, minScore: $minScore) {
    score distance matchProbability product { id sku category brand price inStock } } }`;
const TEXT = `query($text: String!, $filter: ProductFilter, $k: Int) {
  searchProducts(text: $text, filter: $filter, k: $k) { score distance product { id sku category } } }`;

const b64 = (b: Buffer) => b.toString('base64');
const input = (p: SyntheticProduct) => ({
  sku: p.sku,
  title: p.title,
  description: p.description,
  category: p.category,
  brand: p.brand,
  price: p.price,
  currency: p.currency,
  inStock: p.inStock,
  attributes: p.attributes,
  image: { base64: b64(images.get(p.sku)!) },
});

let t: TestService;
beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  for (const p of catalog) images.set(p.sku, await renderProductImage(p.shape, p.colour, { size: 160 }));
  // Several calls, as a merchant's sync would: each call all-or-nothing.
  for (let i = 0; i < N; i += 20) {
    const res = await t.gql(UPSERT, { p: catalog.slice(i, i + 20).map(input) }, { admin: true });
    expect(res.errors).toBeUndefined();
    for (const r of res.data.upsertProducts) ids.set(r.sku, r.id);
  }
}, 180_000);
afterAll(() => t?.stop());

async function similar(variables: Record<string, unknown>) {
  const res = await t.gql(SIMILAR, variables);
  expect(res.errors).toBeUndefined();
  return res.data.similarProducts as Array<{
    score: number;
    distance: number;
    matchProbability: number | null;
    product: { id: string; sku: string; category: string; brand: string; price: number; inStock: boolean };
  }>;
}

describe('similarProducts by photo', () => {
  const kinds: Perturbation[] = ['resize', 'crop', 'recompress', 'brighter', 'darker'];
  it.each(kinds)('finds the product from a %s copy of its photo (top-1 for ≥ 90% of products)', async (kind) => {
    let top1 = 0;
    let top5 = 0;
    const sample = catalog.filter((_, i) => i % 4 === 0); // 20 products per perturbation keeps the test quick
    for (const p of sample) {
      const photo = await perturb(images.get(p.sku)!, kind);
      const matches = await similar({ image: { base64: b64(photo) }, k: 5 });
      expect(matches).toHaveLength(5);
      if (matches[0]!.product.sku === p.sku) top1++;
      if (matches.some((m) => m.product.sku === p.sku)) top5++;
    }
    expect(top1 / sample.length).toBeGreaterThanOrEqual(0.9);
    expect(top5).toBe(sample.length);
  });

  it('orders by score then id, with distance = 1 - score', async () => {
    const matches = await similar({ image: { base64: b64(images.get(catalog[3]!.sku)!) }, k: 40 });
    expect(matches).toHaveLength(40);
    for (const [i, m] of matches.entries()) {
      expect(m.distance).toBeCloseTo(1 - m.score, 6);
      expect(m.matchProbability).toBeNull();
      if (i > 0) {
        const prev = matches[i - 1]!;
        expect(prev.score > m.score || (prev.score === m.score && Number(prev.product.id) < Number(m.product.id))).toBe(true);
      }
    }
    expect(matches[0]!.product.sku).toBe(catalog[3]!.sku);
    expect(matches[0]!.score).toBeGreaterThan(0.99);
  });

  it('applies category, filter and k together, and returns exactly k when k match', async () => {
    const query = { base64: b64(images.get(catalog[0]!.sku)!) };
    for (const category of ['bags', 'shoes', 'mugs']) {
      const expected = catalog.filter((p) => p.category === category && p.inStock && p.price <= 150);
      const k = Math.min(5, expected.length);
      const matches = await similar({ image: query, category, filter: { inStock: true, maxPrice: 150 }, k: 5 });
      expect(matches).toHaveLength(k);
      for (const m of matches) {
        expect(m.product.category).toBe(category);
        expect(m.product.inStock).toBe(true);
        expect(m.product.price).toBeLessThanOrEqual(150);
      }
    }
    const all = await similar({ image: query, k: 1000 });
    expect(all).toHaveLength(N); // fewer than k exist: all of them
    const brandAndCategories = await similar({ image: query, filter: { brand: 'Acme', categories: ['hats', 'lamps'] }, k: 1000 });
    expect(brandAndCategories.map((m) => m.product.sku).sort()).toEqual(
      catalog
        .filter((p) => p.brand === 'Acme' && ['hats', 'lamps'].includes(p.category))
        .map((p) => p.sku)
        .sort(),
    );
  });

  it('returns the true nearest among the filtered products (same as ranking all and filtering)', async () => {
    const query = { base64: b64(await perturb(images.get(catalog[10]!.sku)!, 'crop')) };
    const everything = await similar({ image: query, k: 1000 });
    const filtered = await similar({ image: query, filter: { categories: ['scarves'] }, k: 3 });
    const expected = everything.filter((m) => m.product.category === 'scarves').slice(0, 3);
    expect(filtered.map((m) => m.product.sku)).toEqual(expected.map((m) => m.product.sku));
  });

  it('cuts off below minScore', async () => {
    const query = { base64: b64(images.get(catalog[5]!.sku)!) };
    const all = await similar({ image: query, k: 80 });
    const cut = all[9]!.score;
    const above = await similar({ image: query, k: 80, minScore: cut });
    expect(above.length).toBeGreaterThanOrEqual(10);
    expect(above.every((m) => m.score >= cut)).toBe(true);
    expect(above.map((m) => m.product.sku)).toEqual(all.filter((m) => m.score >= cut).map((m) => m.product.sku));
  });
});

describe('similarProducts by product', () => {
  it('uses the stored vector and ranks the product itself first', async () => {
    for (const p of catalog.slice(0, 10)) {
      const matches = await similar({ image: { productId: ids.get(p.sku) }, k: 10 });
      expect(matches).toHaveLength(10);
      expect(matches[0]!.product.sku).toBe(p.sku);
      expect(matches[0]!.distance).toBeLessThan(1e-3);
    }
  });

  it('answers NOT_FOUND for an unknown product', async () => {
    const res = await t.gql(SIMILAR, { image: { productId: '999999999' } });
    expect(codes(res)).toEqual(['NOT_FOUND']);
  });
});

describe('searchProducts by text', () => {
  it('returns k products with filters, and repeats of a query (any case) reuse the cached vector', async () => {
    const before = t.service.services.search.cachedTextQueries;
    const a = await t.gql(TEXT, { text: 'Red Circle Bag', k: 7 });
    expect(a.errors).toBeUndefined();
    expect(a.data.searchProducts).toHaveLength(7);
    const b = await t.gql(TEXT, { text: 'red circle bag', k: 7 });
    expect(b.data.searchProducts.map((m: any) => m.product.sku)).toEqual(a.data.searchProducts.map((m: any) => m.product.sku));
    expect(t.service.services.search.cachedTextQueries).toBe(before + 1);
    const hats = await t.gql(TEXT, { text: 'a hat', filter: { category: 'hats' }, k: 100 });
    expect(hats.data.searchProducts.length).toBe(catalog.filter((p) => p.category === 'hats').length);
    expect(hats.data.searchProducts.every((m: any) => m.product.category === 'hats')).toBe(true);
  });
});

describe('ingest', () => {
  it('does not re-embed unchanged image bytes, and re-embeds changed ones', async () => {
    const db = t.service.services.database.db;
    const p = catalog[0]!;
    const id = ids.get(p.sku)!;
    const before = await db
      .selectFrom('product_embeddings')
      .select(['created_at', 'image_sha256'])
      .where('product_id', '=', id)
      .executeTakeFirstOrThrow();
    await t.gql(UPSERT, { p: [{ ...input(p), title: 'Retitled' }] }, { admin: true });
    const same = await db
      .selectFrom('product_embeddings')
      .select(['created_at', 'image_sha256'])
      .where('product_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(same.created_at).toEqual(before.created_at);

    const newPhoto = await renderProductImage('star', 'green', { size: 160 });
    const res = await t.gql(UPSERT, { p: [{ ...input(p), image: { base64: b64(newPhoto) } }] }, { admin: true });
    const changed = await db
      .selectFrom('product_embeddings')
      .select(['created_at', 'image_sha256'])
      .where('product_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(changed.image_sha256).toBe(res.data.upsertProducts[0].imageSha256);
    expect(changed.image_sha256).not.toBe(before.image_sha256);
    // The product is now found by its new look.
    const matches = await similar({ image: { base64: b64(newPhoto) }, k: 1 });
    expect(matches[0]!.product.sku).toBe(p.sku);
    // restore
    await t.gql(UPSERT, { p: [input(p)] }, { admin: true });
  });
});

describe('bad input keeps the server serving and writes nothing', () => {
  const count = async () => (await t.gql(`{ products { totalCount } }`)).data.products.totalCount as number;

  it.each([
    ['k = 0', { k: 0 }, 'BAD_USER_INPUT'],
    ['k = 5000', { k: 5000 }, 'BAD_USER_INPUT'],
    ['minScore = 2', { minScore: 2 }, 'BAD_USER_INPUT'],
    ['min above max price', { filter: { minPrice: 9, maxPrice: 1 } }, 'BAD_USER_INPUT'],
    ['category twice, differently', { category: 'bags', filter: { category: 'hats' } }, 'BAD_USER_INPUT'],
  ])('%s', async (_name, args, code) => {
    const res = await t.gql(SIMILAR, { image: { productId: ids.get(catalog[0]!.sku) }, ...args });
    expect(codes(res)).toEqual([code]);
  });

  it('refuses corrupt, oversized and private-network images with stable codes', async () => {
    const png = images.get(catalog[0]!.sku)!;
    const truncated = png.subarray(0, Math.floor(png.length / 2));
    const huge = await sharpBlank(20000, 20000);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ base64: b64(Buffer.from('definitely not an image')) }, 'INVALID_IMAGE'],
      [{ base64: b64(truncated) }, 'INVALID_IMAGE'],
      [{ base64: b64(huge) }, 'IMAGE_TOO_LARGE'],
      [{ url: 'http://10.0.0.1/cat.png' }, 'URL_NOT_ALLOWED'],
      [{ url: 'http://127.0.0.1:1/cat.png' }, 'URL_NOT_ALLOWED'],
      [{ url: 'http://169.254.169.254/latest/meta-data' }, 'URL_NOT_ALLOWED'],
      [{}, 'BAD_USER_INPUT'],
    ];
    // The service runs in this process: the loopback tripwire makes a regression in the private-address
    // refusal fail here instead of sending traffic to 10.0.0.1 or the metadata address.
    const tripwire = installLoopbackTripwire();
    try {
      for (const [image, code] of cases) {
        const res = await t.gql(SIMILAR, { image });
        expect(codes(res), JSON.stringify(image).slice(0, 60)).toEqual([code]);
      }
      expect(tripwire.violations).toEqual([]);
    } finally {
      tripwire.uninstall();
    }
    const before = await count();
    const res = await t.gql(
      UPSERT,
      {
        p: [
          { ...input(catalog[1]!), sku: 'NEW-1' },
          { ...input(catalog[2]!), sku: 'NEW-2', image: { base64: b64(truncated) } },
        ],
      },
      { admin: true },
    );
    expect(codes(res)).toEqual(['INVALID_IMAGE']);
    expect(res.errors![0]!.message).toMatch(/products\[1\]\.image/);
    expect(await count()).toBe(before);
    // still serving
    expect(await similar({ image: { productId: ids.get(catalog[0]!.sku) }, k: 3 })).toHaveLength(3);
  });

  it('enforces ImageInput @oneOf for variables and literals alike', async () => {
    const id = ids.get(catalog[0]!.sku)!;
    // Variables: coercion of the @oneOf input fails, which Apollo reports as BAD_USER_INPUT.
    for (const image of [{}, { productId: id, url: 'https://example.com/a.png' }, { productId: id, base64: null }]) {
      expect([...new Set(codes(await t.gql(SIMILAR, { image })))], JSON.stringify(image)).toEqual(['BAD_USER_INPUT']);
    }
    // Literals: refused by validation, before any resolver runs.
    for (const literal of ['{}', `{ productId: "${id}", url: "https://example.com/a.png" }`, `{ productId: "${id}", base64: null }`]) {
      const res = await t.gql(`{ similarProducts(image: ${literal}) { score } }`);
      expect([...new Set(codes(res))], literal).toEqual(['GRAPHQL_VALIDATION_FAILED']);
      expect(res.errors![0]!.message).toMatch(/ImageInput/);
    }
    const ok = await t.gql(`{ similarProducts(image: { productId: "${id}" }, k: 2) { score } }`);
    expect(ok.errors).toBeUndefined();
  });

  it('refuses an empty text query', async () => {
    expect(codes(await t.gql(TEXT, { text: '   ' }))).toEqual(['BAD_USER_INPUT']);
  });
});

async function sharpBlank(width: number, height: number): Promise<Buffer> {
  // A PNG whose header declares 20000×20000 but whose pixel data compresses to almost nothing.
  const { default: sharp } = await import('sharp');
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' }, limitInputPixels: false })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

describe('analysts in SQL', () => {
  it('similar_products() agrees with the GraphQL productId query, and product_vectors shows active vectors', async () => {
    const db = t.service.services.database.db;
    const id = ids.get(catalog[4]!.sku)!;
    const viaSql = await sql<{ id: string; score: number }>`SELECT id, score FROM similar_products(${id}::bigint, 8)`.execute(db);
    const viaApi = await similar({ image: { productId: id }, k: 8 });
    expect(viaSql.rows.map((r) => String(r.id))).toEqual(viaApi.map((m) => m.product.id));
    const inCategory = await sql<{ category: string }>`SELECT category FROM similar_products(${id}::bigint, 50, 'hats')`.execute(db);
    expect(inCategory.rows.length).toBe(catalog.filter((p) => p.category === 'hats').length);
    expect(inCategory.rows.every((r) => r.category === 'hats')).toBe(true);
    const view = await sql<{ n: string }>`SELECT count(*)::text AS n FROM product_vectors`.execute(db);
    expect(Number(view.rows[0]!.n)).toBe(N);
  });

  it('gives the read-only role SELECT but not writes', async () => {
    const db = t.service.services.database.db;
    const role = await sql<{ n: string }>`SELECT count(*)::text AS n FROM pg_roles WHERE rolname = 'vps_analyst'`.execute(db);
    expect(role.rows[0]!.n).toBe('1');
    await db.transaction().execute(async (trx) => {
      await sql`SET LOCAL ROLE vps_analyst`.execute(trx);
      const n = await sql<{ n: string }>`SELECT count(*)::text AS n FROM products`.execute(trx);
      expect(Number(n.rows[0]!.n)).toBeGreaterThan(0);
      await sql`SAVEPOINT s`.execute(trx);
      await expect(sql`DELETE FROM products`.execute(trx)).rejects.toThrow(/permission denied/);
      await sql`ROLLBACK TO SAVEPOINT s`.execute(trx);
    });
    expect((await t.gql(`{ products { totalCount } }`)).data.products.totalCount).toBeGreaterThanOrEqual(N);
  });
});

describe('multipart uploads', () => {
  const upload = (photo: Buffer, headers: Record<string, string>) => {
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: SIMILAR, variables: { image: { file: null }, k: 3 } }));
    form.append('map', JSON.stringify({ '0': ['variables.image.file'] }));
    form.append('0', new Blob([photo], { type: 'image/png' }), 'photo.png');
    return fetch(`${t.url}/graphql`, { method: 'POST', body: form, headers });
  };

  it('searches by an uploaded photo when the client sends the preflight header', async () => {
    const p = catalog[12]!;
    const res = await upload(await perturb(images.get(p.sku)!, 'recompress'), { 'apollo-require-preflight': 'true' });
    const body = (await res.json()) as any;
    expect(body.errors).toBeUndefined();
    expect(body.data.similarProducts[0].product.sku).toBe(p.sku);
  });

  it('refuses an upload without the header (CSRF prevention)', async () => {
    const res = await upload(images.get(catalog[12]!.sku)!, {});
    expect(res.status).toBe(400);
  });

  it('refuses an uploaded file over the byte cap as IMAGE_TOO_LARGE', async () => {
    const small = await startTestService({ IMAGE_MAX_BYTES: '4096' }, { model: await tinyModelDir() });
    try {
      const form = new FormData();
      form.append('operations', JSON.stringify({ query: SIMILAR, variables: { image: { file: null }, k: 3 } }));
      form.append('map', JSON.stringify({ '0': ['variables.image.file'] }));
      form.append('0', new Blob([Buffer.alloc(64 * 1024, 7)], { type: 'image/png' }), 'big.png');
      const res = await fetch(`${small.url}/graphql`, { method: 'POST', body: form, headers: { 'apollo-require-preflight': 'true' } });
      const body = (await res.json()) as any;
      expect(body.errors[0].extensions.code, JSON.stringify(body)).toBe('IMAGE_TOO_LARGE');
    } finally {
      await small.stop();
    }
  });

  it('refuses an uploaded file that is not an image', async () => {
    const res = await upload(Buffer.from('<html>nope</html>'), { 'apollo-require-preflight': 'true' });
    const body = (await res.json()) as any;
    expect(body.errors[0].extensions.code).toBe('INVALID_IMAGE');
  });
});
