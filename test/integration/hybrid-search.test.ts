/**
 * searchProducts modes (KEYWORD, HYBRID) and cursor pages, end to end over HTTP with the real ONNX Runtime
 * (tiny stand-in model) on both backends: a SKU or brand typed into the box comes first, filters and
 * "exactly k when k exist" hold in every mode, and pages concatenate to the k list without repeats.
 *
 * @backend full-text search and fusion in SQL
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog, type SyntheticProduct } from '../../src/demo/synthetic-catalog.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';

const N = 40;
const catalog = syntheticCatalog(N, 5);
const ids = new Map<string, string>(); // sku → id

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
const SEARCH = `query($text: String!, $filter: ProductFilter, $k: Int, $mode: SearchMode, $weights: FusionWeights, $minScore: Float) {
  searchProducts(text: $text, filter: $filter, k: $k, mode: $mode, weights: $weights, minScore: $minScore) {
    score distance product { id sku title category brand inStock } } }`;
const SEARCH_PAGE = `query($text: String!, $filter: ProductFilter, $mode: SearchMode, $first: Int, $after: String) {
  searchProductsPage(text: $text, filter: $filter, mode: $mode, first: $first, after: $after) {
    edges { cursor node { score product { id sku } } } pageInfo { hasNextPage endCursor } } }`;
const SIMILAR_PAGE = `query($image: ImageInput!, $first: Int, $after: String) {
  similarProductsPage(image: $image, first: $first, after: $after) {
    edges { cursor node { score product { id } } } pageInfo { hasNextPage endCursor } } }`;
const SIMILAR = `query($image: ImageInput!, $k: Int) { similarProducts(image: $image, k: $k) { product { id } } }`;

type Match = {
  score: number;
  distance: number;
  product: { id: string; sku: string; title: string; category: string; brand: string; inStock: boolean };
};

let t: TestService;
beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  const input = async (p: SyntheticProduct) => ({
    sku: p.sku,
    title: p.title,
    description: p.description,
    category: p.category,
    brand: p.brand,
    price: p.price,
    currency: p.currency,
    inStock: p.inStock,
    attributes: p.attributes,
    image: { base64: (await renderProductImage(p.shape, p.colour, { size: 96 })).toString('base64') },
  });
  const res = await t.gql(UPSERT, { p: await Promise.all(catalog.map(input)) }, { admin: true });
  expect(res.errors).toBeUndefined();
  for (const r of res.data.upsertProducts as Array<{ id: string; sku: string }>) ids.set(r.sku, r.id);
}, 180_000);
afterAll(() => t?.stop());

async function search(variables: Record<string, unknown>): Promise<Match[]> {
  const res = await t.gql(SEARCH, variables);
  expect(res.errors).toBeUndefined();
  return res.data.searchProducts as Match[];
}

describe('KEYWORD and HYBRID', () => {
  it('find a SKU typed in any case at rank 1, every time, in both modes', async () => {
    for (const p of catalog.filter((_, i) => i % 4 === 0)) {
      for (const mode of ['KEYWORD', 'HYBRID']) {
        for (const text of [p.sku, p.sku.toLowerCase()]) {
          const found = await search({ text, mode, k: 5 });
          expect(found[0]!.product.sku, `${mode} ${text}`).toBe(p.sku);
        }
      }
    }
  });

  it('rank the products of a brand typed into the box first', async () => {
    const brand = catalog[0]!.brand;
    const count = catalog.filter((p) => p.brand === brand).length;
    for (const mode of ['KEYWORD', 'HYBRID']) {
      const found = await search({ text: brand.toUpperCase(), mode, k: count + 3 });
      expect(found.slice(0, count).every((m) => m.product.brand === brand)).toBe(true);
    }
  });

  it('KEYWORD matches title words with stemming (plural finds singular), within the filters', async () => {
    const noun = catalog[0]!.title.split(' ').at(-1)!;
    const expected = catalog.filter((p) => p.title.endsWith(` ${noun}`) && p.inStock);
    const found = await search({ text: `${noun}s`, mode: 'KEYWORD', k: 50, filter: { inStock: true } });
    expect(new Set(found.map((m) => m.product.sku))).toEqual(new Set(expected.map((p) => p.sku)));
    expect(found.every((m) => m.score > 0 && m.score < 1)).toBe(true);
  });

  it('HYBRID returns exactly k when k products match the filters, even when few match the words', async () => {
    const category = catalog[0]!.category;
    const inCategory = catalog.filter((p) => p.category === category).length;
    const k = Math.min(inCategory, 6);
    const found = await search({ text: 'zzz-no-such-word', mode: 'HYBRID', k, filter: { category } });
    expect(found).toHaveLength(k);
    expect(found.every((m) => m.product.category === category)).toBe(true);
    // Keyword only: nothing matches the words, and that is the answer.
    expect(await search({ text: 'zzz-no-such-word', mode: 'KEYWORD', k, filter: { category } })).toHaveLength(0);
  });

  it('with the keyword weight at 0, HYBRID ranks as VECTOR does', async () => {
    const text = 'a red round thing';
    const vector = await search({ text, mode: 'VECTOR', k: 8 });
    const hybrid = await search({ text, mode: 'HYBRID', k: 8, weights: { keyword: 0 } });
    expect(hybrid.map((m) => m.product.id)).toEqual(vector.map((m) => m.product.id));
  });

  it('refuses bad weights and minScore outside VECTOR', async () => {
    expect(codes(await t.gql(SEARCH, { text: 'mug', mode: 'HYBRID', weights: { vector: -1 } }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(SEARCH, { text: 'mug', mode: 'HYBRID', weights: { vector: 0, keyword: 0 } }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(SEARCH, { text: 'mug', mode: 'KEYWORD', minScore: 0.5 }))).toEqual(['BAD_USER_INPUT']);
  });
});

describe('cursor pages', () => {
  async function allPages(query: string, field: string, variables: Record<string, unknown>, first: number) {
    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 20; i++) {
      const res = await t.gql(query, { ...variables, first, after });
      expect(res.errors).toBeUndefined();
      const page = res.data[field] as {
        edges: Array<{ node: { product: { id: string } } }>;
        pageInfo: { hasNextPage: boolean; endCursor: string | null };
      };
      seen.push(...page.edges.map((e) => e.node.product.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    return seen;
  }

  it('similarProductsPage concatenates to the k list: no repeats, no gaps', async () => {
    const image = { productId: ids.get(catalog[3]!.sku) };
    const pages = await allPages(SIMILAR_PAGE, 'similarProductsPage', { image }, 7);
    const list = (await t.gql(SIMILAR, { image, k: N })).data.similarProducts as Array<{ product: { id: string } }>;
    expect(pages).toEqual(list.map((m) => m.product.id));
    expect(new Set(pages).size).toBe(N);
  });

  it('searchProductsPage does the same in every mode', async () => {
    for (const mode of ['VECTOR', 'KEYWORD', 'HYBRID']) {
      const text = mode === 'KEYWORD' ? 'demo' : 'blue square';
      const pages = await allPages(SEARCH_PAGE, 'searchProductsPage', { text, mode }, 9);
      const list = await search({ text, mode, k: N });
      expect(pages, mode).toEqual(list.map((m) => m.product.id));
      expect(new Set(pages).size, mode).toBe(pages.length);
    }
  });

  it('refuses a cursor of another query as BAD_USER_INPUT, and a malformed one as INVALID_CURSOR', async () => {
    const res = await t.gql(SEARCH_PAGE, { text: 'blue', mode: 'HYBRID', first: 3 });
    const after = res.data.searchProductsPage.pageInfo.endCursor as string;
    expect(codes(await t.gql(SEARCH_PAGE, { text: 'red', mode: 'HYBRID', first: 3, after }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(SEARCH_PAGE, { text: 'blue', mode: 'HYBRID', first: 3, after: 'not-a-cursor' }))).toEqual(['INVALID_CURSOR']);
  });

  it('answers CONFLICT when the previous page’s last match has left the catalog', async () => {
    const image = { productId: ids.get(catalog[9]!.sku) };
    const res = await t.gql(SIMILAR_PAGE, { image, first: 3 });
    const last = res.data.similarProductsPage.edges.at(-1).node.product.id as string;
    const del = await t.gql(`mutation($id: ID!) { deleteProduct(id: $id) }`, { id: last }, { admin: true });
    expect(del.errors).toBeUndefined();
    const next = await t.gql(SIMILAR_PAGE, { image, first: 3, after: res.data.similarProductsPage.pageInfo.endCursor });
    expect(codes(next)).toEqual(['CONFLICT']);
  });
});
