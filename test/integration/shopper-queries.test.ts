/**
 * The queries shoppers ask (issue 24) end to end over HTTP, with the real ONNX Runtime (the generated tiny
 * stand-in model) and a real database: composed queries (weighted photos, products and texts),
 * recommendations from example products (both strategies), and zero-shot classification. Each answer is
 * checked against the same arithmetic done here by hand, from the model's own vectors: the texts and
 * photos embedded by the service's embedder, the product vectors read from the database.
 *
 * @backend the search statements over a composed vector and the recommendation walks on each backend's pgvector
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog, type SyntheticProduct } from '../../src/demo/synthetic-catalog.js';
import { decodeForModel } from '../../src/images/embed.js';
import type { Embedder } from '../../src/embedding/index.js';
import { codes, startTestService, tinyModelDir, type GqlResponse, type TestService } from '../support/service.js';

const N = 48; // 8 shapes × 6 colours
const catalog = syntheticCatalog(N, 24);
const images = new Map<string, Buffer>();
const ids = new Map<string, string>(); // sku → id

const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;
const COMPOSED = `query($q: ComposedQuery, $k: Int, $filter: ProductFilter, $minScore: Float) {
  similarProducts(query: $q, k: $k, filter: $filter, minScore: $minScore) { score matchProbability product { id sku category } } }`;
const COMPOSED_PAGE = `query($q: ComposedQuery, $first: Int, $after: String) {
  similarProductsPage(query: $q, first: $first, after: $after) { edges { node { score product { id } } } pageInfo { hasNextPage endCursor } } }`;
const SIMILAR = `query($image: ImageInput!, $k: Int) { similarProducts(image: $image, k: $k) { score product { id } } }`;

/** sigmoid(10·cos − 1): the tiny model's cosines spread over the probabilities. */
const LOGIT_SCALE = Math.log(10);
const LOGIT_BIAS = -1;

const b64 = (b: Buffer) => b.toString('base64');
const input = (p: SyntheticProduct) => ({
  sku: p.sku,
  title: p.title,
  description: p.description,
  category: p.category,
  brand: p.brand,
  price: p.price,
  inStock: p.inStock,
  image: { base64: b64(images.get(p.sku)!) },
});

let t: TestService;
let embedder: Embedder;
/** Every product's stored vector (one photo each), as the database holds it. */
const stored = new Map<string, Float32Array>();

beforeAll(async () => {
  // A calibration given by setting (the tiny model has none): classifyImage's probabilities are checked against it.
  t = await startTestService(
    { EMBEDDING_LOGIT_SCALE: String(LOGIT_SCALE), EMBEDDING_LOGIT_BIAS: String(LOGIT_BIAS) },
    { model: await tinyModelDir() },
  );
  for (const p of catalog) images.set(p.sku, await renderProductImage(p.shape, p.colour, { size: 128 }));
  for (let i = 0; i < N; i += 24) {
    const res = await t.gql(UPSERT, { p: catalog.slice(i, i + 24).map(input) }, { admin: true });
    expect(res.errors).toBeUndefined();
    for (const r of res.data.upsertProducts) ids.set(r.sku, r.id);
  }
  embedder = t.service.services.models.loadedModels()[0]!.embedder;
  const rows = await sql<{ id: string; v: string }>`
    SELECT product_id::text AS id, embedding::vector::text AS v FROM product_embeddings`.execute(t.service.services.database.db);
  for (const r of rows.rows) stored.set(r.id, Float32Array.from(JSON.parse(r.v) as number[]));
}, 180_000);
afterAll(() => t?.stop());

// --- the arithmetic, by hand -------------------------------------------------------------------------
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);
const unit = (v: Float32Array) => {
  const n = Math.sqrt(dot(v, v));
  return v.map((x) => x / n);
};
function weightedSum(terms: Array<[Float32Array, number]>): Float32Array {
  const out = new Float32Array(terms[0]![0].length);
  for (const [v, w] of terms) {
    const u = unit(v);
    for (let i = 0; i < out.length; i++) out[i]! += w * u[i]!;
  }
  return unit(out);
}
async function textVector(text: string) {
  return (await embedder.embedTexts([text]))[0]!;
}
async function photoVector(bytes: Buffer) {
  const pixels = await decodeForModel(bytes, t.service.services.imageLimits);
  return (await embedder.embedImages([pixels]))[0]!;
}
/** Every product ranked by its cosine with q: the exact answer the service must give. */
function ranking(q: Float32Array): Array<{ id: string; score: number }> {
  return [...stored.entries()].map(([id, v]) => ({ id, score: dot(q, unit(v)) })).sort((a, b) => b.score - a.score);
}
/**
 * The service's answer against the exact one: the same scores rank by rank (to the half precision the
 * vectors are stored at), and each product's score its own cosine with q.
 */
function expectRanking(got: Array<{ score: number; product: { id: string } }>, q: Float32Array, k: number) {
  const want = ranking(q);
  expect(got).toHaveLength(k);
  const byId = new Map(want.map((w) => [w.id, w.score]));
  got.forEach((m, i) => {
    expect(Math.abs(m.score - want[i]!.score)).toBeLessThan(2e-3);
    expect(Math.abs(m.score - byId.get(m.product.id)!)).toBeLessThan(2e-3);
  });
}

async function composed(terms: unknown[], extra: Record<string, unknown> = {}) {
  const res = await t.gql(COMPOSED, { q: { terms }, k: 8, ...extra });
  expect(res.errors).toBeUndefined();
  return res.data.similarProducts as Array<{
    score: number;
    matchProbability: number | null;
    product: { id: string; sku: string; category: string };
  }>;
}

describe('similarProducts(query: { terms }) — composed queries', () => {
  it('ranks by the weighted sum of the unit vectors, normalised: a photo, a colour, a material away', async () => {
    const photo = images.get(catalog[2]!.sku)!;
    const terms = [
      { image: { base64: b64(photo) }, weight: 1 },
      { text: 'red', weight: 0.6 },
      { text: 'leather', weight: -0.4 },
    ];
    const got = await composed(terms);
    const q = weightedSum([
      [await photoVector(photo), 1],
      [await textVector('red'), 0.6],
      [await textVector('leather'), -0.4],
    ]);
    expectRanking(got, q, 8);
    for (const m of got) expect(m.matchProbability).toBeNull();
    // The negative weight counts as negative: with it flipped the answer is another one.
    const flipped = weightedSum([
      [await photoVector(photo), 1],
      [await textVector('red'), 0.6],
      [await textVector('leather'), 0.4],
    ]);
    expect(Math.abs(dot(q, flipped))).toBeLessThan(0.9999);
  });

  it("takes a product's stored vector as a term, and only the weights' ratios matter", async () => {
    const a = ids.get(catalog[5]!.sku)!;
    const b = ids.get(catalog[17]!.sku)!;
    const q = weightedSum([
      [stored.get(a)!, 2],
      [stored.get(b)!, -1],
    ]);
    const got = await composed([
      { image: { productId: a }, weight: 2 },
      { image: { productId: b }, weight: -1 },
    ]);
    expectRanking(got, q, 8);
    const scaled = await composed([
      { image: { productId: a }, weight: 20 },
      { image: { productId: b }, weight: -10 },
    ]);
    expect(scaled.map((m) => m.product.id)).toEqual(got.map((m) => m.product.id));
  });

  it('one photo of any weight > 0 is the plain photo query; a term of weight 0 is dropped', async () => {
    const photo = { base64: b64(images.get(catalog[9]!.sku)!) };
    const plain = await t.gql(SIMILAR, { image: photo, k: 6 });
    const one = await composed(
      [
        { image: photo, weight: 3 },
        { text: 'green', weight: 0 },
      ],
      { k: 6 },
    );
    expect(one.map((m) => m.product.id)).toEqual(plain.data.similarProducts.map((m: any) => m.product.id));
    one.forEach((m, i) => expect(m.score).toBeCloseTo(plain.data.similarProducts[i].score, 5));
  });

  it('keeps the filters, minScore and exactly k', async () => {
    const terms = [
      { text: 'a blue bag', weight: 1 },
      { image: { productId: ids.get(catalog[0]!.sku)! }, weight: 0.5 },
    ];
    const category = catalog[0]!.category;
    const inCategory = catalog.filter((p) => p.category === category).length;
    const k = Math.min(5, inCategory);
    const got = await composed(terms, { filter: { category }, k: 5 });
    expect(got).toHaveLength(k);
    for (const m of got) expect(m.product.category).toBe(category);
    const all = await composed(terms, { k: 10 });
    const floor = all[4]!.score;
    const kept = await composed(terms, { k: 10, minScore: floor });
    expect(kept.length).toBeLessThanOrEqual(10);
    for (const m of kept) expect(m.score).toBeGreaterThanOrEqual(floor);
  });

  it('pages a composed query without repeats, in the order of the whole answer', async () => {
    const q = {
      terms: [
        { text: 'red', weight: 1 },
        { text: 'circle', weight: 1 },
      ],
    };
    const whole = await composed(q.terms, { k: 9 });
    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 3; i++) {
      const res: GqlResponse<any> = await t.gql(COMPOSED_PAGE, { q, first: 3, after });
      expect(res.errors).toBeUndefined();
      const page = res.data.similarProductsPage as { edges: any[]; pageInfo: { endCursor: string | null } };
      seen.push(...page.edges.map((e: any) => e.node.product.id));
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(whole.map((m) => m.product.id));
  });

  it.each([
    ['no terms', { terms: [] }, 'EMPTY_TERMS'],
    [
      'every weight 0',
      {
        terms: [
          { text: 'red', weight: 0 },
          { text: 'blue', weight: 0 },
        ],
      },
      'ZERO_WEIGHTS',
    ],
    ['more than 8 terms', { terms: Array.from({ length: 9 }, (_, i) => ({ text: `colour ${i}` })) }, 'TOO_MANY_TERMS'],
    ['terms that cancel out', { terms: [{ text: 'red shoe' }, { text: 'RED shoe', weight: -1 }] }, 'ZERO_VECTOR'],
  ])('refuses %s with BAD_USER_INPUT (details.reason) and runs no search', async (_name, query, reason) => {
    const before = t.service.services.search.cachedTextQueries;
    const res = await t.gql(COMPOSED, { q: query });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
    expect(res.errors![0]!.extensions!.reason).toBe(reason);
    expect(res.data?.similarProducts ?? null).toBeNull();
    // Refused before anything was embedded, except terms that cancel out (their vectors had to be known).
    if (reason !== 'ZERO_VECTOR') expect(t.service.services.search.cachedTextQueries).toBe(before);
  });

  it('refuses an unknown product with NOT_FOUND before any of its texts is embedded', async () => {
    const before = t.service.services.search.cachedTextQueries;
    const res = await t.gql(COMPOSED, { q: { terms: [{ text: 'a never asked text' }, { image: { productId: '987654321' } }] } });
    expect(codes(res)).toEqual(['NOT_FOUND']);
    expect(res.errors![0]!.extensions!.field).toBe('query.terms[1].image.productId');
    expect(t.service.services.search.cachedTextQueries).toBe(before);
  });

  it.each([
    ['image and query both', { image: { productId: '1' }, q: { terms: [{ text: 'red' }] } }],
    ['a term with both image and text', { q: { terms: [{ text: 'red', image: { productId: '1' } }] } }],
    ['a term with neither', { q: { terms: [{ weight: 1 }] } }],
    ['a weight over 100', { q: { terms: [{ text: 'red', weight: 101 }] } }],
  ])('refuses %s with BAD_USER_INPUT', async (_name, variables) => {
    const res = await t.gql(
      `query($image: ImageInput, $q: ComposedQuery) { similarProducts(image: $image, query: $q) { score } }`,
      variables,
    );
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
  });
});

const CLASSIFY = `query($image: ImageInput!, $labels: [String!]!, $template: String) {
  classifyImage(image: $image, labels: $labels, template: $template) { model message labels { label score probability } } }`;

describe('classifyImage — zero-shot classification', () => {
  it("gives each label SigLIP's probability, sigmoid(exp(logit_scale)·cos + logit_bias), from the model's own vectors, most probable first", async () => {
    const p = catalog[3]!;
    const photo = images.get(p.sku)!;
    const labels = ['red', 'blue', 'green', 'circle', 'square', 'bag'];
    const res = await t.gql(CLASSIFY, { image: { base64: b64(photo) }, labels, template: 'a {} thing' });
    expect(res.errors).toBeUndefined();
    const out = res.data.classifyImage as { message: string | null; labels: Array<{ label: string; score: number; probability: number }> };
    expect(out.message).toBeNull();
    expect(out.labels.map((l) => l.label).sort()).toEqual([...labels].sort());
    const image = await photoVector(photo);
    for (const l of out.labels) {
      const cos = dot(image, await textVector(`a ${l.label} thing`));
      expect(l.score).toBeCloseTo(cos, 5);
      expect(l.probability).toBeCloseTo(1 / (1 + Math.exp(-(Math.exp(LOGIT_SCALE) * cos + LOGIT_BIAS))), 6);
    }
    for (let i = 1; i < out.labels.length; i++) expect(out.labels[i - 1]!.probability).toBeGreaterThanOrEqual(out.labels[i]!.probability);
  });

  it("classifies a product's stored vector with the default template", async () => {
    const id = ids.get(catalog[7]!.sku)!;
    const res = await t.gql(CLASSIFY, { image: { productId: id }, labels: ['mugs', 'bags'] });
    expect(res.errors).toBeUndefined();
    for (const l of res.data.classifyImage.labels) {
      expect(l.score).toBeCloseTo(dot(unit(stored.get(id)!), await textVector(`a photo of ${l.label}`)), 3);
    }
  });

  it.each([
    ['no labels', []],
    ['an empty label', ['red', ' ']],
    ['65 labels', Array.from({ length: 65 }, (_, i) => `label ${i}`)],
  ])('refuses %s with BAD_USER_INPUT before embedding anything', async (_name, labels) => {
    const before = t.service.services.search.cachedTextQueries;
    const res = await t.gql(CLASSIFY, { image: { productId: ids.get(catalog[0]!.sku)! }, labels });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
    expect(t.service.services.search.cachedTextQueries).toBe(before);
  });

  it('refuses a template without {} with BAD_USER_INPUT', async () => {
    const res = await t.gql(CLASSIFY, { image: { productId: ids.get(catalog[0]!.sku)! }, labels: ['red'], template: 'a photo' });
    expect(codes(res)).toEqual(['BAD_USER_INPUT']);
  });
});

describe('classifyImage on a model without calibration', () => {
  let plain: TestService;
  beforeAll(async () => {
    plain = await startTestService({}, { model: await tinyModelDir() });
  }, 120_000);
  afterAll(() => plain?.stop());

  it('answers null probabilities with a message saying why, the labels ordered by cosine', async () => {
    const res = await plain.gql(CLASSIFY, { image: { base64: b64(images.get(catalog[1]!.sku)!) }, labels: ['red', 'blue', 'green'] });
    expect(res.errors).toBeUndefined();
    const out = res.data.classifyImage;
    expect(out.message).toMatch(/calibration/);
    expect(out.labels.map((l: any) => l.probability)).toEqual([null, null, null]);
    const scores = out.labels.map((l: any) => l.score as number);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
  });
});

const RECOMMEND = `query($p: [ID!]!, $n: [ID!], $s: RecommendStrategy, $k: Int, $filter: ProductFilter, $x: Boolean) {
  recommendProducts(positive: $p, negative: $n, strategy: $s, k: $k, filter: $filter, excludeExamples: $x) {
    score distance product { id category } } }`;

async function recommend(variables: Record<string, unknown>) {
  const res = await t.gql(RECOMMEND, variables);
  expect(res.errors).toBeUndefined();
  return res.data.recommendProducts as Array<{ score: number; distance: number; product: { id: string; category: string } }>;
}

/** Qdrant's BEST_SCORE by hand: the best cosine to a positive, or −(best to a negative)² where a negative is closer. */
function bestScoreRanking(pos: string[], neg: string[], exclude: string[]) {
  return [...stored.entries()]
    .filter(([id]) => !exclude.includes(id))
    .map(([id, v]) => {
      const u = unit(v);
      const p = Math.max(...pos.map((x) => dot(u, unit(stored.get(x)!))));
      const n = neg.length ? Math.max(...neg.map((x) => dot(u, unit(stored.get(x)!)))) : -Infinity;
      return { id, score: n > p ? -(n * n) : p };
    })
    .sort((a, b) => b.score - a.score);
}

function expectSameRanking(got: Array<{ score: number; product: { id: string } }>, want: Array<{ id: string; score: number }>, k: number) {
  expect(got).toHaveLength(k);
  const byId = new Map(want.map((w) => [w.id, w.score]));
  got.forEach((m, i) => {
    expect(Math.abs(m.score - want[i]!.score)).toBeLessThan(2e-3);
    expect(Math.abs(m.score - byId.get(m.product.id)!)).toBeLessThan(2e-3);
  });
}

describe('recommendProducts — more like these, not like that', () => {
  const id = (i: number) => ids.get(catalog[i]!.sku)!;

  it('AVERAGE_VECTOR ranks by avg(positive) + (avg(positive) − avg(negative)), examples left out', async () => {
    const pos = [id(1), id(9), id(17)];
    const neg = [id(4), id(30)];
    const got = await recommend({ p: pos, n: neg, k: 10 });
    const q = weightedSum([
      ...pos.map((x): [Float32Array, number] => [stored.get(x)!, 2 / 3]),
      ...neg.map((x): [Float32Array, number] => [stored.get(x)!, -1 / 2]),
    ]);
    const want = ranking(q).filter((w) => !pos.includes(w.id) && !neg.includes(w.id));
    expectSameRanking(got, want, 10);
    for (const m of got) expect(m.distance).toBeCloseTo(1 - m.score, 6);
  });

  it('AVERAGE_VECTOR without negatives is the mean of the positives', async () => {
    const pos = [id(2), id(3)];
    const got = await recommend({ p: pos, k: 6 });
    const q = weightedSum(pos.map((x): [Float32Array, number] => [stored.get(x)!, 1]));
    expectSameRanking(
      got,
      ranking(q).filter((w) => !pos.includes(w.id)),
      6,
    );
  });

  it("BEST_SCORE ranks by each product's nearest positive, penalised (−cos²) where a negative is nearer: the exact ranking", async () => {
    const pos = [id(0), id(12), id(27)];
    const neg = [id(8), id(20)];
    const got = await recommend({ p: pos, n: neg, s: 'BEST_SCORE', k: 12 });
    expectSameRanking(got, bestScoreRanking(pos, neg, [...pos, ...neg]), 12);
  });

  it('BEST_SCORE reaches past the penalised products for k: the whole catalog ranked', async () => {
    const pos = [id(5)];
    const neg = [id(6), id(13), id(21)];
    const k = N - pos.length - neg.length;
    const got = await recommend({ p: pos, n: neg, s: 'BEST_SCORE', k });
    const want = bestScoreRanking(pos, neg, [...pos, ...neg]);
    expect(want.some((w) => w.score < 0)).toBe(true); // some products are nearer a negative
    expectSameRanking(got, want, k);
  });

  it("BEST_SCORE walks deeper when the first walk's candidates are nearer a negative than the positive", async () => {
    // A positive whose 3 nearest products are the negatives: its next nearest ones (the first walk's
    // candidates, k + 4 deep) are then likely nearer a negative too, and the top 3 lie further out.
    const k = 3;
    const near = (a: string) =>
      [...stored.keys()]
        .filter((x) => x !== a)
        .sort((x, y) => dot(unit(stored.get(y)!), unit(stored.get(a)!)) - dot(unit(stored.get(x)!), unit(stored.get(a)!)));
    const setups = [...stored.keys()].map((a) => {
      const order = near(a);
      const neg = order.slice(0, 3);
      const firstWalk = new Set(order.slice(3, k + 3)); // the first walk's candidates, examples left out
      return { a, neg, firstWalk, want: bestScoreRanking([a], neg, [a, ...neg]) };
    });
    const setup = setups.find((x) => x.want.slice(0, k).some((w) => !x.firstWalk.has(w.id)));
    expect(setup).toBeDefined(); // the catalog holds such a positive: the test exercises the deeper walks
    const got = await recommend({ p: [setup!.a], n: setup!.neg, s: 'BEST_SCORE', k });
    expectSameRanking(got, setup!.want, k);
  });

  it('keeps the examples when excludeExamples is false (a positive is its own best match)', async () => {
    const pos = [id(11)];
    const got = await recommend({ p: pos, s: 'BEST_SCORE', k: 3, x: false });
    expect(got[0]!.product.id).toBe(pos[0]);
    expect(got[0]!.score).toBeCloseTo(1, 3);
  });

  it.each(['AVERAGE_VECTOR', 'BEST_SCORE'])('%s keeps the filters and returns exactly k when k match', async (s) => {
    const category = catalog[0]!.category;
    const matching = catalog.filter((p) => p.category === category).length;
    const got = await recommend({ p: [id(0)], n: [id(1)], s, k: matching - 1, filter: { category } });
    expect(got).toHaveLength(matching - 1); // every other product of the category: the examples are left out
    for (const m of got) expect(m.product.category).toBe(category);
    expect(new Set(got.map((m) => m.product.id)).size).toBe(got.length);
  });

  it.each([
    ['no positive', { p: [] }, 'BAD_USER_INPUT', 'positive'],
    ['17 positives', { p: Array.from({ length: 17 }, (_, i) => String(i + 1)) }, 'BAD_USER_INPUT', 'positive'],
    ['a product both positive and negative', { p: ['1', '2'], n: ['2'] }, 'BAD_USER_INPUT', 'negative'],
    ['an unknown positive', { p: ['1', '987654321'] }, 'NOT_FOUND', 'positive[1]'],
    ['an unknown negative', { p: ['1'], n: ['987654322'] }, 'NOT_FOUND', 'negative[0]'],
  ])('refuses %s (%s) before any walk', async (_name, variables, code, field) => {
    const vars = { ...variables, p: variables.p.map((x, i) => (i === 0 && x === '1' ? id(0) : x)) };
    const res = await t.gql(RECOMMEND, { s: 'BEST_SCORE', ...vars });
    expect(codes(res)).toEqual([code]);
    expect(res.errors![0]!.extensions!.field).toBe(field);
  });
});
