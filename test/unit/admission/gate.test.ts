/** The admission gate: bounded concurrency, bounded queue, bounded wait, and abort of waiting work. */
import { describe, expect, it } from 'vitest';
import { Admission, Gate, requestDeadline, untilAborted } from '../../../src/admission/index.js';
import { enforceBudget, operationCost } from '../../../src/admission/budget.js';
import { AppError } from '../../../src/errors.js';
import { Kind, parse, type OperationDefinitionNode } from 'graphql';

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
};

describe('Gate', () => {
  it('runs up to `concurrency` at once, queues up to `maxQueue`, refuses the next at once with OVERLOADED', async () => {
    const gate = new Gate('test', { concurrency: 1, maxQueue: 1, maxWaitMs: 10_000 });
    const first = await gate.acquire();
    const queued = gate.acquire();
    expect(gate.stats()).toMatchObject({ active: 1, queued: 1 });
    expect(await code(gate.acquire())).toBe('OVERLOADED');
    first();
    const second = await queued; // granted when the first slot is released
    expect(gate.stats()).toMatchObject({ active: 1, queued: 0, refused: 1 });
    second();
    second(); // a second release is ignored
    expect(gate.stats().active).toBe(0);
  });

  it('refuses a caller that waited longer than maxWaitMs', async () => {
    const gate = new Gate('test', { concurrency: 1, maxQueue: 5, maxWaitMs: 20 });
    const held = await gate.acquire();
    const err = await gate.acquire().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).details).toMatchObject({ stage: 'test', reason: 'wait_timeout' });
    held();
  });

  it('drops a waiting caller whose signal fires; its work never runs', async () => {
    const gate = new Gate('test', { concurrency: 1, maxQueue: 5, maxWaitMs: 10_000 });
    const held = await gate.acquire();
    const deadline = requestDeadline(0);
    let ran = false;
    const waiting = gate.run(async () => {
      ran = true;
    }, deadline.signal);
    deadline.abort();
    expect(await code(waiting)).toBe('REQUEST_ABORTED');
    expect(gate.stats().queued).toBe(0);
    held();
    await new Promise((r) => setTimeout(r, 5));
    expect(ran).toBe(false);
  });

  it('a request deadline answers TIMEOUT while the work goes on', async () => {
    const deadline = requestDeadline(20);
    const never = new Promise<never>(() => {});
    expect(await code(untilAborted(never, deadline.signal))).toBe('TIMEOUT');
  });
});

describe('Admission', () => {
  it('sends a large k through the heavyQuery gate, a small one through query', () => {
    const wide = { concurrency: 1, maxQueue: 1, maxWaitMs: 10 };
    const a = new Admission({ stages: { fetch: wide, decode: wide, embed: wide, query: wide, heavyQuery: wide }, heavyK: 100 });
    expect(a.queryGate(10).name).toBe('query');
    expect(a.queryGate(100).name).toBe('query');
    expect(a.queryGate(101).name).toBe('heavyQuery');
  });
});

describe('operationCost', () => {
  const cost = (q: string, variables?: Record<string, unknown>) => {
    const doc = parse(q);
    return operationCost(doc, doc.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION) as OperationDefinitionNode, variables);
  };
  it('counts similarity fields and k, literal, defaulted, by variable and through fragments', () => {
    expect(cost('{ a: similarProducts(image: {productId: "1"}, k: 100) { score } b: searchProducts(text: "x") { score } }')).toEqual({
      similarityFields: 2,
      similarityK: 110,
      pageFirst: 0,
      embeddings: 1, // the text; a product's stored vector needs none
    });
    expect(
      cost('query($k: Int) { ...F ...F } fragment F on Query { similarProducts(image: {productId: "1"}, k: $k) { score } }', { k: 400 }),
    ).toMatchObject({ similarityFields: 2, similarityK: 800 });
    expect(cost('query($n: Int) { products(first: $n) { totalCount } }', { n: 300 }).pageFirst).toBe(300);
  });
  it('counts k products × imagesPerProduct photos (each product listed with its n best photos)', () => {
    expect(cost('{ similarProducts(image: {productId: "1"}, k: 20, imagesPerProduct: 3) { score } }').similarityK).toBe(60);
    expect(
      cost(
        'query($n: Int) { similarProductsPage(image: {productId: "1"}, first: 10, imagesPerProduct: $n) { pageInfo { hasNextPage } } }',
        { n: 4 },
      ).similarityK,
    ).toBe(44); // a first page ranks first + 1 products (its depth), each with its n photos: 11 × 4
    expect(cost('{ compareModels(models: ["a", "b"], text: "x", k: 5, imagesPerProduct: 2) { k } }').similarityK).toBe(20);
  });

  it("counts a federation gateway's _entities batch like a products page of as many references", () => {
    // The operation a gateway sends for a batch of Product references (the federation spec's form).
    const entities = 'query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { title } } }';
    const refs = Array.from({ length: 40 }, (_, i) => ({ __typename: 'Product', id: String(i + 1) }));
    expect(cost(entities, { representations: refs })).toEqual({ similarityFields: 0, similarityK: 0, pageFirst: 40, embeddings: 0 });
    expect(
      cost('{ _entities(representations: [{__typename: "Product", sku: "A"}, {__typename: "Product", sku: "B"}]) { __typename } }')
        .pageFirst,
    ).toBe(2);
  });

  it('counts similarity pages by what they rank (first + 1 on a first page), and compareModels by k once per model it compares', () => {
    const pages =
      '{ a: similarProductsPage(image: {productId: "1"}, first: 100) { pageInfo { hasNextPage } } b: searchProductsPage(text: "x") { pageInfo { hasNextPage } } }';
    expect(cost(pages)).toMatchObject({ similarityFields: 2, similarityK: 112 });
    expect(cost('{ compareModels(models: ["a", "b"], text: "x", k: 50) { k } }')).toMatchObject({ similarityFields: 1, similarityK: 100 });
    expect(cost('query($m: [ID!]) { compareModels(models: $m, text: "x") { k } }', { m: ['a', 'b', 'c'] }).similarityK).toBe(30);
    // No models named: every ready model answers, up to 8, so it counts as 8.
    expect(cost('{ compareModels(text: "x", k: 200) { k } }').similarityK).toBe(1600);
  });

  it('counts each text and photo an operation embeds: composed-query terms, classifyImage labels, one per compared model', () => {
    const composed = `query($q: ComposedQuery) { similarProducts(query: $q, k: 5) { score } }`;
    const terms = [
      { image: { base64: 'AAAA' }, weight: 1 }, // a photo: embedded
      { image: { productId: '7' }, weight: 1 }, // a stored vector: not embedded
      { image: { productId: '7' }, region: { x: 0, y: 0, width: 0.5, height: 0.5 } }, // a crop of it: embedded
      { text: 'red', weight: 0.6 },
      { text: 'leather', weight: -0.4 },
      { text: 'dropped', weight: 0 }, // weight 0: dropped unread
    ];
    expect(cost(composed, { q: { terms } })).toMatchObject({ similarityFields: 1, similarityK: 5, embeddings: 4 });
    expect(cost('{ classifyImage(image: {base64: "AAAA"}, labels: ["bags", "shoes", "mugs"]) { label } }').embeddings).toBe(4);
    expect(
      cost('query($l: [String!]!) { classifyImage(image: {productId: "1"}, labels: $l) { label } }', { l: ['a', 'b'] }).embeddings,
    ).toBe(2);
    expect(cost('{ compareModels(models: ["a", "b"], image: {url: "https://example.com/a.jpg"}) { k } }').embeddings).toBe(2);
    expect(cost('{ searchProducts(text: "x", mode: KEYWORD) { score } }').embeddings).toBe(0);
  });

  it('counts recommendProducts by k, once per positive example with BEST_SCORE (one walk each)', () => {
    expect(cost('{ recommendProducts(positive: ["1", "2", "3"], k: 20) { score } }')).toMatchObject({
      similarityFields: 1,
      similarityK: 20,
    });
    expect(cost('{ recommendProducts(positive: ["1", "2", "3"], strategy: BEST_SCORE, k: 20) { score } }').similarityK).toBe(60);
  });

  it('refuses an operation over its embeddings budget with BUDGET_EXCEEDED, before anything runs', () => {
    const labels = Array.from({ length: 64 }, (_, i) => `"l${i}"`).join(', ');
    const c = cost(`{ a: classifyImage(image: {base64: "AAAA"}, labels: [${labels}]) { label } b: searchProducts(text: "x") { score } }`);
    expect(c.embeddings).toBe(66);
    const budget = { similarityFields: 3, similarityK: 1000, pageFirst: 500, embeddings: 65 };
    expect(() => enforceBudget(c, budget, 'anonymous')).toThrow(
      expect.objectContaining({
        extensions: expect.objectContaining({ code: 'BUDGET_EXCEEDED', limit: 'embeddings', requested: 66, max: 65 }),
      }),
    );
    expect(() => enforceBudget(c, { ...budget, embeddings: 66 }, 'anonymous')).not.toThrow();
  });
});
