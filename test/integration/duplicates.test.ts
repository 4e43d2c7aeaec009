/**
 * Near-duplicates (issue 25) over GraphQL with the real tiny ONNX model: planted copies of catalog photos
 * are found by the k-NN self-join in the groups of their originals, groups page, and similarProducts
 * (collapseDuplicates: true) keeps one product per group while still returning exactly k whenever k groups
 * match (also when k needs every group).
 *
 * @backend the HNSW k-NN self-join (LATERAL, iterative scan) on both builds of pgvector
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { catalogInputs, UPSERT } from './reindex-support.js';

const N = 30;
const SCAN = `mutation($t: Float, $n: Int) { scanDuplicates(threshold: $t, neighbours: $n) { model threshold neighbours products pairs groups } }`;
const GROUPS = `query($first: Int, $after: String) { duplicateGroups(first: $first, after: $after) {
  scan { threshold groups pairs } groups { id maxScore products { id sku } pairs { a b score } } endCursor } }`;
const SIMILAR = `query($id: ID!, $k: Int, $c: Boolean) { similarProducts(image: { productId: $id }, k: $k, collapseDuplicates: $c) { score product { id sku } } }`;

let t: TestService;
const bySku = new Map<string, string>();

beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  const inputs = await catalogInputs(N, 9, 'D');
  // Planted copies (the same photo under another SKU, the commonest duplicate): two of product 0, one of 1 and of 2.
  const copies = [0, 0, 1, 2].map((i, n) => ({ ...inputs[i]!, sku: `COPY-${n}-OF-${i}`, title: `copy ${n}` }));
  const res = await t.gql(UPSERT, { p: [...inputs, ...copies] }, { admin: true });
  expect(res.errors).toBeUndefined();
  for (const p of res.data.upsertProducts) bySku.set(p.sku, p.id);
}, 180_000);
afterAll(() => t?.stop());

async function allGroups(first = 2) {
  const groups: any[] = [];
  let after: string | null = null;
  for (;;) {
    const r: any = await t.gql(GROUPS, { first, after }, { admin: true });
    expect(r.errors).toBeUndefined();
    groups.push(...r.data.duplicateGroups.groups);
    after = r.data.duplicateGroups.endCursor;
    if (!after) return groups;
  }
}

it('answers NOT_FOUND before a scan, then finds every planted copy in its original’s group', async () => {
  expect(codes(await t.gql(GROUPS, {}, { admin: true }))).toEqual(['NOT_FOUND']);
  const scan = await t.gql(SCAN, { t: 0.999, n: 5 }, { admin: true });
  expect(scan.errors).toBeUndefined();
  expect(scan.data.scanDuplicates).toMatchObject({ threshold: 0.999, neighbours: 5, products: N + 4 });
  const groups = await allGroups();
  expect(groups).toHaveLength(scan.data.scanDuplicates.groups);
  const groupOf = new Map<string, string>();
  for (const g of groups) {
    expect(g.products.length).toBeGreaterThanOrEqual(2);
    expect(g.id).toBe(g.products[0].id); // the lowest id names the group
    for (const p of g.products) {
      expect(groupOf.has(p.id)).toBe(false); // a product is in one group
      groupOf.set(p.id, g.id);
    }
    for (const pair of g.pairs) expect(pair.score).toBeGreaterThanOrEqual(0.999);
    expect(g.maxScore).toBeCloseTo(Math.max(...g.pairs.map((p: any) => p.score)), 9);
  }
  const same = (a: string, b: string) =>
    groupOf.get(bySku.get(a)!) !== undefined && groupOf.get(bySku.get(a)!) === groupOf.get(bySku.get(b)!);
  expect(same('D-00000', 'COPY-0-OF-0')).toBe(true);
  expect(same('D-00000', 'COPY-1-OF-0')).toBe(true);
  expect(same('D-00001', 'COPY-2-OF-1')).toBe(true);
  expect(same('D-00002', 'COPY-3-OF-2')).toBe(true);
  expect(codes(await t.gql(SCAN, { t: 1.5 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
  expect(codes(await t.gql(SCAN, { n: 0 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
  expect(codes(await t.gql(GROUPS, { after: 'nonsense' }, { admin: true }))).toEqual(['INVALID_CURSOR']);
  expect(codes(await t.gql(SCAN, {}))).toEqual(['UNAUTHENTICATED']);
}, 120_000);

it('collapses duplicates in similarProducts: one product per group, still exactly k', async () => {
  const groups = await allGroups(100);
  const groupOf = new Map<string, string>();
  for (const g of groups) for (const p of g.products) groupOf.set(p.id, g.id);
  const key = (id: string) => groupOf.get(id) ?? `own ${id}`;
  const distinctGroups = new Set([...bySku.values()].map(key)).size;
  expect(distinctGroups).toBeLessThan(N + 4);
  const query = bySku.get('D-00000')!;

  const plain = await t.gql(SIMILAR, { id: query, k: 10, c: false });
  const plainIds = plain.data.similarProducts.map((m: any) => m.product.id);
  expect(plainIds).toContain(bySku.get('COPY-0-OF-0'));
  expect(new Set(plainIds.map(key)).size).toBeLessThan(10); // the copies take slots without collapsing

  for (const k of [1, 10, distinctGroups]) {
    const r = await t.gql(SIMILAR, { id: query, k, c: true });
    expect(r.errors).toBeUndefined();
    const got = r.data.similarProducts.map((m: any) => m.product.id);
    expect(got).toHaveLength(k);
    expect(new Set(got.map(key)).size).toBe(k);
    expect(key(got[0])).toBe(key(query)); // the query's own group ranks first (identical photos)
    const scores = r.data.similarProducts.map((m: any) => m.score);
    expect(scores).toEqual([...scores].sort((a: number, b: number) => b - a));
  }
  // more than there are groups: every group once, and no more
  const all = await t.gql(SIMILAR, { id: query, k: distinctGroups + 5, c: true });
  expect(all.data.similarProducts).toHaveLength(distinctGroups);
}, 120_000);
