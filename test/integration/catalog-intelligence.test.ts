/**
 * Catalog intelligence (issue 25) over GraphQL, with the real job queue and the real tiny ONNX model on
 * this run's database: a tagging run classifies every product's stored photo vectors with the shared
 * zero-shot implementation, resumes after its worker stops mid-run, cancels; acceptSuggestions fills only
 * what the merchant left missing, in one recorded transaction; a near-duplicate scan finds planted copies,
 * and similarProducts(collapseDuplicates: true) keeps one product per group and still returns exactly k. An
 * accepted colour then narrows the listing and searches through filter.attributes.
 *
 * The tiny model has no published calibration: EMBEDDING_LOGIT_SCALE = 0 and EMBEDDING_LOGIT_BIAS = 0 make
 * its probability sigmoid(cos), so the probabilities spread over (0.27, 0.73) and thresholds mean something.
 *
 * @backend the job queue's recovery and the acceptance's transaction on the single session; the k-NN self-join on PGlite's pgvector
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedVector } from '../../src/db/embeddings.js';
import { embedLabels, classifyVector } from '../../src/embedding/zero-shot.js';
import { codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { catalogInputs, sleep, UPSERT } from './reindex-support.js';

const N = 24;
const COLOURS = ['red', 'green', 'blue', 'yellow', 'black'];
const TAG = `mutation($a: String!, $l: [String!]!, $m: Boolean) { tagCatalog(attribute: $a, labels: $l, onlyMissing: $m) { id state total attribute labels template } }`;
const TAG_JOB = `query($id: ID!) { tagJob(id: $id) { id state processed total failed attempts error errors { productId message } } }`;
const CANCEL = `mutation($id: ID!) { cancelTagging(id: $id) { id state processed } }`;
const ACCEPT = `mutation($a: String!, $p: Float!) { acceptSuggestions(attribute: $a, minProbability: $p) { id attribute target minProbability accepted skipped } }`;
const SUGGESTIONS = `query($a: String!, $id: ID, $p: Float) { tagSuggestions(attribute: $a, productId: $id, minProbability: $p, first: 500) { productId rank label probability score model } }`;

let t: TestService;
const ids: string[] = [];
const uncategorized = new Set<string>();
const merchantColour = new Set<string>();

beforeAll(async () => {
  t = await startTestService(
    {
      REINDEX_BATCH_SIZE: '4',
      REINDEX_THROTTLE_MS: '150',
      REINDEX_LEASE_SECONDS: '2',
      JOBS_POLL_INTERVAL_MS: '500',
      EMBEDDING_LOGIT_SCALE: '0',
      EMBEDDING_LOGIT_BIAS: '0',
    },
    { model: await tinyModelDir() },
  );
  const inputs = (await catalogInputs(N, 7, 'CI')).map((p, i) => ({
    ...p,
    ...(i % 4 === 0 ? { category: 'uncategorized' } : {}),
    ...(i % 3 === 0 ? { attributes: { colour: 'merchant teal' } } : {}),
  }));
  const res = await t.gql(UPSERT, { p: inputs }, { admin: true });
  expect(res.errors).toBeUndefined();
  res.data.upsertProducts.forEach((p: { id: string }, i: number) => {
    ids.push(p.id);
    if (i % 4 === 0) uncategorized.add(p.id);
    if (i % 3 === 0) merchantColour.add(p.id);
  });
}, 180_000);
afterAll(() => t?.stop());

const db = () => t.service.services.database.db;

async function waitFor(id: string, states = ['SUCCEEDED', 'FAILED', 'CANCELLED'], until = (_: any) => true, timeoutMs = 90_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await t.gql(TAG_JOB, { id }, { admin: true });
    expect(r.errors).toBeUndefined();
    const job = r.data.tagJob;
    if (states.includes(job.state) && until(job)) return job;
    if (Date.now() > end) throw new Error(`tagging ${id} still ${JSON.stringify(job)}`);
    await sleep(50);
  }
}

async function suggestionRows(attribute: string) {
  const r = await sql<{ product_id: string; rank: number; label: string; probability: number; score: number; job_id: string }>`
    SELECT product_id::text, rank, label, probability, score, job_id::text FROM tag_suggestions WHERE attribute = ${attribute}
    ORDER BY product_id, rank`.execute(db());
  return r.rows;
}

async function product(id: string) {
  const r = await sql<{
    category: string;
    attributes: Record<string, unknown>;
  }>`SELECT category, attributes FROM products WHERE id = ${id}`.execute(db());
  return r.rows[0]!;
}

describe('tagging', () => {
  it('classifies every product by its stored photo vectors with the shared zero-shot formula, and changes no product', async () => {
    const before = await Promise.all(ids.map(product));
    const started = await t.gql(TAG, { a: 'colour', l: COLOURS }, { admin: true });
    expect(started.errors).toBeUndefined();
    expect(started.data.tagCatalog).toMatchObject({ attribute: 'colour', labels: COLOURS, template: 'a photo of {}' });
    const job = await waitFor(started.data.tagCatalog.id);
    expect(job).toMatchObject({ state: 'SUCCEEDED', processed: N, total: N, failed: 0 });

    const rows = await suggestionRows('colour');
    expect(rows).toHaveLength(N * 3);
    // The product's stored vector, classified by embedding/zero-shot.ts here, gives the same labels and probabilities.
    const model = (await t.service.services.models.cachedActiveModel())!;
    const embedder = t.service.services.models.embedder(model.id)!;
    const set = await embedLabels(embedder, COLOURS);
    for (const id of ids.slice(0, 5)) {
      const v = Float32Array.from(JSON.parse((await storedVector(db(), model.id, id))!) as number[]);
      const expected = classifyVector(v, set, (s) => embedder.matchProbability(s)).slice(0, 3);
      const got = rows.filter((r) => r.product_id === id);
      expect(got.map((r) => r.label)).toEqual(expected.map((e) => e.label));
      got.forEach((r, i) => {
        expect(r.probability).toBeCloseTo(expected[i]!.probability!, 3); // halfvec storage rounds the vector
        expect(r.probability).toBeCloseTo(1 / (1 + Math.exp(-r.score)), 9); // scale exp(0) = 1, bias 0
      });
    }
    expect(await Promise.all(ids.map(product))).toEqual(before);
  }, 120_000);

  it('refuses a second run of the same attribute while one is open, and a bad taxonomy, with stable codes', async () => {
    const first = await t.gql(TAG, { a: 'material', l: ['leather', 'cotton'] }, { admin: true });
    expect(first.errors).toBeUndefined();
    const second = await t.gql(TAG, { a: 'material', l: ['wool'] }, { admin: true });
    expect(codes(second)).toEqual(['CONFLICT']);
    expect(codes(await t.gql(TAG, { a: 'pattern', l: [] }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(TAG, { a: ' ', l: ['x'] }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(TAG, { a: 'pattern', l: ['x'] }))).toEqual(['UNAUTHENTICATED']);
    await waitFor(first.data.tagCatalog.id);
  }, 120_000);

  it('cancels a running run: it stops at its next batch, and what it committed stays', async () => {
    const started = await t.gql(TAG, { a: 'style', l: ['plain', 'patterned', 'shiny'] }, { admin: true });
    const id = started.data.tagCatalog.id;
    await waitFor(id, ['RUNNING'], (j) => j.processed >= 4);
    const cancelled = await t.gql(CANCEL, { id }, { admin: true });
    expect(cancelled.errors).toBeUndefined();
    expect(cancelled.data.cancelTagging.state).toBe('CANCELLED');
    await sleep(1000); // several throttled batches' time: a run still going would have committed more
    const job = await waitFor(id);
    expect(job.state).toBe('CANCELLED');
    expect(job.processed).toBeLessThan(N);
    const rows = await suggestionRows('style');
    expect(new Set(rows.map((r) => r.product_id)).size).toBe(job.processed);
    expect(codes(await t.gql(CANCEL, { id }, { admin: true }))).toEqual(['CONFLICT']);
    // a cancelled run does not block the next one
    const again = await t.gql(TAG, { a: 'style', l: ['plain'] }, { admin: true });
    expect(again.errors).toBeUndefined();
    await waitFor(again.data.tagCatalog.id);
  }, 120_000);

  it('resumes a run whose worker stopped mid-run (its row as a SIGKILL leaves it), from its last committed batch', async () => {
    const started = await t.gql(TAG, { a: 'finish', l: ['matte', 'glossy'] }, { admin: true });
    const id = started.data.tagCatalog.id;
    const mid = await waitFor(id, ['RUNNING'], (j) => j.processed >= 8);
    // The worker "dies": its lease is gone (another worker id, a heartbeat long past). Its next commit is
    // fenced off, as a killed process's would never come; recovery hands the job back to the queue.
    await sql`UPDATE reindex_jobs SET worker_id = 'dead-worker', heartbeat_at = now() - interval '1 hour' WHERE id = ${id}`.execute(db());
    const job = await waitFor(id);
    expect(job).toMatchObject({ state: 'SUCCEEDED', processed: N, total: N, failed: 0 });
    expect(job.attempts).toBeGreaterThanOrEqual(2);
    expect(mid.processed).toBeLessThan(N);
    const rows = await suggestionRows('finish');
    expect(rows).toHaveLength(N * 2);
    expect(new Set(rows.map((r) => `${r.product_id}/${r.rank}`)).size).toBe(N * 2);
  }, 120_000);
});

describe('acceptance', () => {
  it('fills only the attributes the merchant left missing, in one recorded acceptance, and never overwrites', async () => {
    const top = new Map((await suggestionRows('colour')).filter((r) => r.rank === 1).map((r) => [r.product_id, r]));
    const min = [...top.values()].map((r) => r.probability).sort((a, b) => a - b)[Math.floor(N / 3)]!;
    const qualifying = ids.filter((id) => top.get(id)!.probability >= min);
    const r = await t.gql(ACCEPT, { a: 'colour', p: min }, { admin: true });
    expect(r.errors).toBeUndefined();
    const fill = qualifying.filter((id) => !merchantColour.has(id));
    expect(r.data.acceptSuggestions).toMatchObject({
      attribute: 'colour',
      target: 'ATTRIBUTES',
      accepted: fill.length,
      skipped: qualifying.length - fill.length,
    });
    expect(fill.length).toBeGreaterThan(0);
    expect(qualifying.length - fill.length).toBeGreaterThan(0);
    for (const id of ids) {
      const p = await product(id);
      if (merchantColour.has(id)) expect(p.attributes.colour).toBe('merchant teal');
      else if (fill.includes(id)) expect(p.attributes.colour).toBe(top.get(id)!.label);
      else expect(p.attributes.colour).toBeUndefined();
    }
    const items = await sql<{ product_id: string; label: string }>`
      SELECT product_id::text, label FROM tag_acceptance_items WHERE acceptance_id = ${r.data.acceptSuggestions.id} ORDER BY product_id`.execute(
      db(),
    );
    expect(items.rows.map((i) => i.product_id).sort()).toEqual([...fill].sort());
    // A second acceptance finds everything set: nothing changes, and it says so.
    const again = await t.gql(ACCEPT, { a: 'colour', p: 0 }, { admin: true });
    expect(again.data.acceptSuggestions).toMatchObject({
      accepted: N - merchantColour.size - fill.length,
      skipped: merchantColour.size + fill.length,
    });
    for (const id of merchantColour) expect((await product(id)).attributes.colour).toBe('merchant teal');
  }, 60_000);

  it('an accepted colour narrows the listing and every search through filter.attributes, still exactly k', async () => {
    // After the first test's two acceptances every product has a colour: the merchant's or an accepted label.
    const colourOf = new Map(await Promise.all(ids.map(async (id) => [id, (await product(id)).attributes.colour as string] as const)));
    const byColour = new Map<string, string[]>();
    for (const [id, c] of colourOf) byColour.set(c, [...(byColour.get(c) ?? []), id]);
    const [label, members] = [...byColour].filter(([c]) => c !== 'merchant teal').sort((a, b) => b[1].length - a[1].length)[0]!;
    expect(members.length).toBeGreaterThan(1);
    const filter = { attributes: [{ name: 'colour', values: [label] }] };
    const listed = await t.gql(`query($f: ProductFilter) { products(filter: $f, first: 500) { totalCount edges { node { id } } } }`, {
      f: filter,
    });
    expect(listed.errors).toBeUndefined();
    expect(listed.data.products.totalCount).toBe(members.length);
    expect(listed.data.products.edges.map((e: any) => e.node.id).sort()).toEqual([...members].sort());
    const k = members.length - 1;
    const searches = [
      [`query($f: ProductFilter, $k: Int) { r: searchProducts(text: "a photo", filter: $f, k: $k) { product { id } } }`, {}],
      [
        `query($f: ProductFilter, $k: Int, $p: ID!) { r: similarProducts(image: { productId: $p }, filter: $f, k: $k) { product { id } } }`,
        { p: ids[1] },
      ],
      [
        `query($f: ProductFilter, $k: Int, $p: ID!) { r: recommendProducts(positive: [$p], filter: $f, k: $k) { product { id } } }`,
        { p: ids[1] },
      ],
      [`query($f: ProductFilter, $k: Int) { r: searchProducts(text: "a photo", filter: $f, k: $k, mode: HYBRID) { product { id } } }`, {}],
      [
        `query($f: ProductFilter, $k: Int, $p: ID!) { r: similarProducts(query: { terms: [{ image: { productId: $p } }, { text: "a photo", weight: 0.5 }] }, filter: $f, k: $k) { product { id } } }`,
        { p: ids[2] },
      ],
    ] as const;
    for (const [query, extra] of searches) {
      const r = await t.gql(query, { f: filter, k, ...extra });
      expect(r.errors).toBeUndefined();
      const got: string[] = r.data.r.map((m: any) => m.product.id);
      expect(got).toHaveLength(k);
      for (const id of got) expect(colourOf.get(id)).toBe(label);
    }
    // pages: two pages of a similarProductsPage hold every member once, and nothing else
    const PAGE = `query($f: ProductFilter, $p: ID!, $n: Int, $after: String) { similarProductsPage(image: { productId: $p }, filter: $f, first: $n, after: $after) { edges { node { product { id } } } pageInfo { hasNextPage endCursor } } }`;
    const half = Math.ceil(members.length / 2);
    const one = await t.gql(PAGE, { f: filter, p: ids[1], n: half });
    expect(one.errors).toBeUndefined();
    const two = await t.gql(PAGE, { f: filter, p: ids[1], n: half, after: one.data.similarProductsPage.pageInfo.endCursor });
    expect(two.errors).toBeUndefined();
    const paged = [...one.data.similarProductsPage.edges, ...two.data.similarProductsPage.edges].map((e: any) => e.node.product.id);
    expect(paged.sort()).toEqual([...members].sort());
    // the merchant's own value and the accepted one, either: the union; a colour nobody has: nothing
    const either = await t.gql(`query($f: ProductFilter) { products(filter: $f) { totalCount } }`, {
      f: { attributes: [{ name: 'colour', values: [label, 'merchant teal'] }] },
    });
    expect(either.data.products.totalCount).toBe(members.length + merchantColour.size);
    const none = await t.gql(`query($f: ProductFilter) { searchProducts(text: "a photo", filter: $f) { score } }`, {
      f: { attributes: [{ name: 'colour', values: ['ultraviolet'] }] },
    });
    expect(none.data.searchProducts).toEqual([]);
    // bounded like categories, refused with the stable code before anything runs
    const tooLong = await t.gql(`query($f: ProductFilter) { searchProducts(text: "a photo", filter: $f) { score } }`, {
      f: { attributes: [{ name: 'colour', values: ['x'.repeat(129)] }] },
    });
    expect(codes(tooLong)).toEqual(['BAD_USER_INPUT']);
    expect(tooLong.errors![0]!.extensions!.field).toBe('filter.attributes[0].values');
    const tooMany = await t.gql(`query($f: ProductFilter) { products(filter: $f) { totalCount } }`, {
      f: { attributes: Array.from({ length: 11 }, (_, i) => ({ name: `k${i}`, values: ['a'] })) },
    });
    expect(codes(tooMany)).toEqual(['BAD_USER_INPUT']);
  }, 60_000);

  it('fills a category only where the merchant gave the placeholder, and search filters see it', async () => {
    const started = await t.gql(TAG, { a: 'category', l: ['bags', 'shoes', 'hats'], m: true }, { admin: true });
    expect(started.errors).toBeUndefined();
    const job = await waitFor(started.data.tagCatalog.id);
    expect(job).toMatchObject({ state: 'SUCCEEDED', processed: uncategorized.size, total: uncategorized.size });
    const before = new Map(await Promise.all(ids.map(async (id) => [id, (await product(id)).category] as const)));
    const r = await t.gql(ACCEPT, { a: 'category', p: 0 }, { admin: true });
    expect(r.data.acceptSuggestions).toMatchObject({ target: 'CATEGORY', accepted: uncategorized.size, skipped: 0 });
    const top = new Map((await suggestionRows('category')).filter((s) => s.rank === 1).map((s) => [s.product_id, s.label]));
    for (const id of ids) {
      const now = (await product(id)).category;
      expect(now).toBe(uncategorized.has(id) ? top.get(id) : before.get(id));
    }
    // the carried filter columns follow the product (migration 0008's triggers)
    const stale = await sql<{ n: string }>`
      SELECT count(*) AS n FROM product_embeddings e JOIN products p ON p.id = e.product_id WHERE e.category IS DISTINCT FROM p.category`.execute(
      db(),
    );
    expect(Number(stale.rows[0]!.n)).toBe(0);
  }, 120_000);

  it('lists suggestions most probable first, and checks its arguments', async () => {
    const r = await t.gql(SUGGESTIONS, { a: 'colour' }, { admin: true });
    expect(r.errors).toBeUndefined();
    const probs = r.data.tagSuggestions.map((s: any) => s.probability);
    expect(probs).toEqual([...probs].sort((a: number, b: number) => b - a));
    expect(r.data.tagSuggestions).toHaveLength(N);
    const one = await t.gql(SUGGESTIONS, { a: 'colour', id: ids[1] }, { admin: true });
    expect(one.data.tagSuggestions.map((s: any) => s.rank)).toEqual([1, 2, 3]);
    expect(codes(await t.gql(ACCEPT, { a: 'colour', p: 1.5 }, { admin: true }))).toEqual(['BAD_USER_INPUT']);
  });
});
