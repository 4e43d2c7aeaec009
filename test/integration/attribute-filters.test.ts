/**
 * ProductFilter.attributes (keys of products.attributes, what acceptSuggestions fills): the listing and
 * every search path count only products whose attributes match, and return exactly k whenever k products
 * match, down to a handful of matches in 6000, on both strategies and on the hot path; a value matches a
 * string, an array's element, and a number or boolean by its JSON text; the exact path finds the products
 * through the GIN index (migration 0012) and the HNSW walk still walks the model's index.
 *
 * @backend JSON containment over a jsonb[] parameter, the GIN index, and filtered HNSW walks on each pgvector build
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageProducts } from '../../src/catalog/catalog.js';
import { validateFilter } from '../../src/catalog/validate.js';
import type { Database } from '../../src/db/connect.js';
import { vectorLiteral } from '../../src/db/embeddings.js';
import type { ProductFilter } from '../../src/db/products.js';
import { AppError } from '../../src/errors.js';
import { modelIndexName } from '../../src/models/hnsw.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { keywordSearch } from '../../src/search/keyword.js';
import { bestCosines, explainNeighbours, nearestNeighbours, searchNeighbours } from '../../src/search/query.js';
import { createTestDatabase } from '../support/test-db.js';
import { seedVectorCatalog } from '../support/vector-catalog.js';
import { embeddingLikeSpace } from '../support/vectors.js';

const N = 6000;
const model = { id: 'test/attributes-64', dimension: 64 };
const space = embeddingLikeSpace({ dimension: model.dimension, seed: 25 });

/** Product i's attributes: colours at 10 %, 1 % and 0.2 % (12 products), a number, an array, a boolean. */
function attributesOf(i: number): Record<string, unknown> {
  const colour = i % 500 === 7 ? 'red' : i % 100 === 3 ? 'teal' : i % 10 === 1 ? 'blue' : 'grey';
  return {
    colour,
    size: i % 2 === 0 ? 42 : 'M',
    ...(i % 7 === 0 ? { materials: ['cotton', 'linen'] } : {}),
    ...(i % 11 === 0 ? { organic: true } : {}),
  };
}
const categoryOf = (i: number) => (i % 3 === 0 ? 'bags' : 'shoes');

let database: Database;
let ids: string[];
const indexOf = new Map<string, number>();

beforeAll(async () => {
  database = await createTestDatabase();
  ids = await seedVectorCatalog(database.db, {
    n: N,
    skuPrefix: 'attr-',
    category: categoryOf,
    models: [{ ...model, space }],
    batch: 2000,
  });
  ids.forEach((id, i) => indexOf.set(id, i));
  await sql`UPDATE products p SET attributes = a.doc::jsonb
            FROM unnest(${ids}::bigint[], ${ids.map((_, i) => JSON.stringify(attributesOf(i)))}::text[]) AS a(id, doc)
            WHERE p.id = a.id`.execute(database.db);
  await sql`ANALYZE products`.execute(database.db);
}, 600_000);
afterAll(() => database?.close());

/** Whether product i passes the filter, by the documented rule (the test's own reading of it). */
function passes(i: number, f: ProductFilter): boolean {
  const attrs = attributesOf(i);
  const entryHolds = ({ name, values }: { name: string; values: string[] }) => {
    const v = attrs[name];
    const texts = (Array.isArray(v) ? v : [v]).filter((x) => x !== undefined).map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
    return values.some((want) => texts.includes(want));
  };
  return (f.attributes ?? []).every(entryHolds) && (f.category == null || categoryOf(i) === f.category);
}
const matching = (f: ProductFilter) => ids.filter((_, i) => passes(i, f));

const colour = (...values: string[]): ProductFilter => ({ attributes: [{ name: 'colour', values }] });
const cases: Array<{ label: string; filter: ProductFilter }> = [
  { label: 'colour blue (10 %)', filter: colour('blue') },
  { label: 'colour teal (1 %)', filter: colour('teal') },
  { label: 'colour red (0.2 %, 12 products)', filter: colour('red') },
  { label: 'colour red or teal', filter: colour('red', 'teal') },
  { label: 'colour red ∧ category bags (4 products, fewer than k)', filter: { ...colour('red'), category: 'bags' } },
  {
    label: 'size 42 (a number) ∧ materials linen (an array) ∧ organic true',
    filter: {
      attributes: [
        { name: 'size', values: ['42'] },
        { name: 'materials', values: ['linen'] },
        { name: 'organic', values: ['true'] },
      ],
    },
  },
];

describe('the rule', () => {
  it('the test catalog has the selectivities its cases name', () => {
    expect(matching(colour('red'))).toHaveLength(12);
    expect(matching({ ...colour('red'), category: 'bags' })).toHaveLength(4);
    expect(matching(cases[5]!.filter).length).toBeGreaterThan(20);
  });
});

describe.each(cases)('$label', ({ filter }) => {
  it('the listing returns exactly the matching products, page by page, and counts them', async () => {
    const want = matching(filter);
    const seen: string[] = [];
    let afterId: string | null = null;
    for (;;) {
      const page = await pageProducts(database.db, { filter, first: 200, afterId });
      for (const p of page.products) expect(passes(indexOf.get(p.id)!, filter)).toBe(true);
      seen.push(...page.products.map((p) => p.id));
      expect(await page.totalCount()).toBe(want.length);
      if (!page.hasNextPage) break;
      afterId = page.products.at(-1)!.id;
    }
    expect(seen).toEqual(want);
  });

  it('similarity search returns exactly k matching products (all of them when fewer match) on both strategies and the hot path', async () => {
    const available = matching(filter).length;
    const k = 10;
    const estimator = new SelectivityEstimator(database.db);
    await estimator.refresh();
    let found = 0;
    let wanted = 0;
    for (let j = 0; j < 4; j++) {
      const vector = vectorLiteral(space.query(j));
      const q = { model, vector, filter, k };
      const exact = await nearestNeighbours(database.db, { ...q, strategy: 'exact' });
      const walk = await nearestNeighbours(database.db, { ...q, strategy: 'hnsw' });
      const hot = await searchNeighbours(database.db, q, estimator);
      for (const res of [exact.neighbours, walk.neighbours, hot.neighbours.map((n) => ({ productId: n.product.id }))]) {
        expect(res).toHaveLength(Math.min(k, available));
        expect(new Set(res.map((n) => n.productId)).size).toBe(res.length);
        for (const n of res) expect(passes(indexOf.get(n.productId)!, filter)).toBe(true);
      }
      // the hot path cannot estimate an attribute filter from its cached statistics: it asked EXPLAIN
      expect(hot.roundTrips).toBeGreaterThanOrEqual(2);
      const truth = new Set(exact.neighbours.map((n) => n.productId));
      found += walk.neighbours.filter((n) => truth.has(n.productId)).length;
      wanted += truth.size;
    }
    expect(found / wanted).toBeGreaterThanOrEqual(0.9);
  });

  it('keyword search and recommendations’ best cosines apply it too', async () => {
    const keyword = await keywordSearch(database.db, { text: 'product', filter, k: 50 });
    expect(keyword).toHaveLength(Math.min(50, matching(filter).length));
    for (const m of keyword) expect(passes(indexOf.get(m.product.id)!, filter)).toBe(true);
    // bestCosines scores only the given products that pass: one that does not has no score.
    const some = [ids[0]!, ids[1]!, ids[3]!, ids[7]!, ids[11]!];
    const cosines = await bestCosines(database.db, model, some, [vectorLiteral(space.query(0))], filter);
    expect([...cosines.keys()].sort()).toEqual(some.filter((id) => passes(indexOf.get(id)!, filter)).sort());
  });
});

it('k = 100: exactly 100 at 10 %, all 72 at 1.2 %, on both strategies', async () => {
  const vector = vectorLiteral(space.query(9));
  for (const strategy of ['exact', 'hnsw'] as const) {
    const res = await nearestNeighbours(database.db, { model, vector, filter: colour('teal', 'red'), k: 100, strategy });
    expect(res.neighbours).toHaveLength(72);
    const blue = await nearestNeighbours(database.db, { model, vector, filter: colour('blue'), k: 100, strategy });
    expect(blue.neighbours).toHaveLength(100);
    for (const n of blue.neighbours) expect(attributesOf(indexOf.get(n.productId)!).colour).toBe('blue');
  }
});

it('values are exact: case, spaces, another key, and [] match nothing', async () => {
  for (const filter of [
    colour('Red'),
    colour(' red'),
    { attributes: [{ name: 'Colour', values: ['red'] }] },
    colour(),
    { attributes: [{ name: 'size', values: ['42.0 '] }] },
  ]) {
    expect(await (await pageProducts(database.db, { filter })).totalCount()).toBe(0);
  }
  // a number jsonb's numeric cannot hold is a string that matches nothing, not an error
  for (const huge of ['1e999999', '-1E-99999', '1e999'])
    expect(await (await pageProducts(database.db, { filter: { attributes: [{ name: 'size', values: [huge] }] } })).totalCount()).toBe(0);
  // the number 42 is contained in a document of 42.0 (jsonb compares numbers by value)
  expect(await (await pageProducts(database.db, { filter: { attributes: [{ name: 'size', values: ['42.0'] }] } })).totalCount()).toBe(
    N / 2,
  );
});

it('the exact path finds the products through the attributes GIN index; the walk walks the model’s HNSW index, checking each candidate’s product', async () => {
  const q = { model, vector: vectorLiteral(space.query(3)), filter: colour('red'), k: 10 };
  expect(await explainNeighbours(database.db, q, 'exact')).toMatch(/products_attributes_idx/);
  // at 10 % the walk reads the HNSW index and looks each candidate's product up by its primary key
  const walk = await explainNeighbours(database.db, { ...q, filter: colour('blue') }, 'hnsw');
  expect(walk).toMatch(new RegExp(`Index Scan using ${modelIndexName(model.id)}`));
  expect(walk).toMatch(/Index Scan using products_pkey on products ap/);
});

describe('refusals', () => {
  const refused = (filter: ProductFilter) => {
    try {
      validateFilter(filter);
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return { code: (e as AppError).code, field: (e as AppError).details?.field as string | undefined };
    }
    throw new Error(`accepted ${JSON.stringify(filter)}`);
  };

  it('bounds entries, values and lengths like categories, naming the field', () => {
    const one = (name: string, values: string[]) => ({ attributes: [{ name, values }] });
    expect(refused(one('x'.repeat(65), ['a']))).toEqual({ code: 'BAD_USER_INPUT', field: 'filter.attributes[0].name' });
    expect(refused(one('', ['a']))).toEqual({ code: 'BAD_USER_INPUT', field: 'filter.attributes[0].name' });
    expect(refused(one('colour', ['y'.repeat(129)]))).toEqual({ code: 'BAD_USER_INPUT', field: 'filter.attributes[0].values' });
    expect(
      refused(
        one(
          'colour',
          Array.from({ length: 101 }, (_, i) => `v${i}`),
        ),
      ),
    ).toEqual({
      code: 'BAD_USER_INPUT',
      field: 'filter.attributes[0].values',
    });
    expect(refused({ attributes: Array.from({ length: 11 }, (_, i) => ({ name: `k${i}`, values: ['a'] })) })).toEqual({
      code: 'BAD_USER_INPUT',
      field: 'filter.attributes',
    });
    // a lone surrogate has no UTF-8 form: refused as input, not failed as JSON inside the statement
    expect(refused(one('colour', ['re\ud800d']))).toEqual({ code: 'BAD_USER_INPUT', field: 'filter.attributes[0]' });
    // at the bounds: accepted
    expect(
      validateFilter(
        one(
          'k'.repeat(64),
          Array.from({ length: 100 }, () => 'v'.repeat(128)),
        ),
      )?.attributes,
    ).toHaveLength(1);
  });
});

it('keys and values with quotes, backslashes and non-Latin letters are matched as given (JSON-encoded, never spliced)', async () => {
  const key = 'fit "slim" \\ cut';
  const value = 'größe "L" \\ 大';
  await sql`UPDATE products SET attributes = attributes || jsonb_build_object(${key}::text, ${value}::text) WHERE id = ${ids[1]!}`.execute(
    database.db,
  );
  const page = await pageProducts(database.db, { filter: { attributes: [{ name: key, values: [value] }] } });
  expect(page.products.map((p) => p.id)).toEqual([ids[1]]);
  const walk = await nearestNeighbours(database.db, {
    model,
    vector: vectorLiteral(space.query(0)),
    filter: { attributes: [{ name: key, values: [value, 'other'] }] },
    k: 10,
    strategy: 'hnsw',
  });
  expect(walk.neighbours.map((n) => n.productId)).toEqual([ids[1]]);
});
