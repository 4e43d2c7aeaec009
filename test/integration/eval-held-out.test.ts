/**
 * `vps eval --held-out` (src/eval/held-out.ts): retrieval on a catalog of several photos per product,
 * each product queried with its last photo held out of the catalog, ranked by its best other photo and by
 * its first photo only. Real ONNX Runtime (the tiny generated model) over the real database, generated
 * photos whose looks are known: each product's held-out photo is a crop of its second photo's look, which
 * no first photo shows, so "best photo" finds the product and "first photo only" cannot know it.
 *
 * @backend the held-out ranking statement (a MATERIALIZED CTE, halfvec distances) on each backend
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLOURS, perturb, renderProductImage, SHAPES, type Colour } from '../../src/demo/synthetic-catalog.js';
import { evaluateHeldOut, formatHeldOutTable } from '../../src/eval/held-out.js';
import { startTestService, tinyModelDir, type TestService } from '../support/service.js';

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
const N = 8;
let t: TestService;
const ids = new Map<string, string>(); // sku → id

/** The n-th distinct look of the generator (shape × colour) as a photo. */
const look = (n: number, size = 160) =>
  renderProductImage(SHAPES[n % SHAPES.length]!, Object.keys(COLOURS)[Math.floor(n / SHAPES.length)] as Colour, { size });
const b64 = (b: Buffer) => ({ base64: b.toString('base64') });

beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  const products = [];
  // P-i: first photo look i, second look 20 + i, last (held out) a crop of look 20 + i.
  for (let i = 0; i < N; i++) {
    const second = await look(20 + i);
    products.push({
      sku: `P-${i}`,
      title: `Product ${i}`,
      category: 'bags',
      images: [{ image: b64(await look(i)) }, { image: b64(second) }, { image: b64(await perturb(second, 'crop')) }],
    });
  }
  // Z: its held-out photo is a crop of Q's only photo, a look Z shows nowhere else. Q has one photo (not sampled).
  const q = await look(42);
  products.push({
    sku: 'Z',
    title: 'Z',
    category: 'bags',
    images: [{ image: b64(await look(40)) }, { image: b64(await look(41)) }, { image: b64(await perturb(q, 'crop')) }],
  });
  products.push({ sku: 'Q', title: 'Q', category: 'bags', images: [{ image: b64(q) }] });
  const res = await t.gql(UPSERT, { p: products }, { admin: true });
  expect(res.errors).toBeUndefined();
  for (const p of res.data!.upsertProducts as Array<{ id: string; sku: string }>) ids.set(p.sku, p.id);
}, 180_000);
afterAll(() => t?.stop());

const deps = () => ({ db: t.service.services.database.db, models: t.service.services.models, search: t.service.services.search });

describe('held-out photo evaluation', () => {
  it('ranks by the best other photo against the first photo only, for products of two photos or more', async () => {
    const report = await evaluateHeldOut(deps());
    expect(report.products).toBe(N + 1); // Q has one photo: nothing to hold out
    expect(report.skipped).toBe(0);
    expect(report.models).toHaveLength(1);
    const [m] = report.models;
    const rank = (sku: string) => report.outcomes.find((o) => o.product.id === ids.get(sku))!.ranks[0]!;
    // Best photo: each P-i by its second photo, whose look the held-out crop shows.
    for (let i = 0; i < N; i++) expect(rank(`P-${i}`).bestPhoto).toBe(1);
    // First photo only: no first photo shows a P-i's held-out look, so most are not found first.
    expect(m!.bestPhoto.recallAt1).toBeGreaterThan(m!.firstPhoto.recallAt1);
    expect(m!.firstPhoto.recallAt1).toBeLessThanOrEqual(0.5);
    expect(m!.bestPhoto.queries).toBe(N + 1);
  });

  it('takes the held-out photo out of the catalog: its own vectors do not find its product', async () => {
    const report = await evaluateHeldOut(deps());
    const z = report.outcomes.find((o) => o.product.id === ids.get('Z'))!.ranks[0]!;
    // Q's photo is the held-out crop's look: Q comes first. Were the held-out photo counted, Z would be
    // first at distance 0.
    expect(z.bestPhoto).not.toBe(1);
    expect(z.firstPhoto).not.toBe(1);
  });

  it('prints both rules per model; limit and category narrow the sample', async () => {
    const report = await evaluateHeldOut(deps(), { limit: 3 });
    expect(report.products).toBe(3);
    const table = formatHeldOutTable(report);
    expect(table).toMatch(/best photo\s+3\s/);
    expect(table).toMatch(/first photo only\s+3\s/);
    expect(table).toContain('last photo held out of the catalog');
    expect((await evaluateHeldOut(deps(), { category: 'shoes' })).products).toBe(0);
  });
});
