/**
 * Hybrid search quality and cost: recall@10 of VECTOR, KEYWORD and HYBRID on a labelled synthetic set,
 * and round trips per query of the similarity hot path against the step-by-step query.
 *
 *   npx tsx bench/search/hybrid.ts [--rows 20000] [--backend postgres|pglite] [--queries 60]
 *
 * The set: products belong to concepts (a cluster in vector space and a noun, e.g. "kettle"); only some
 * titles name the noun (the rest describe the product in other words, as real catalogs do), brands cut
 * across concepts. Queries come labelled in three kinds:
 * - semantic: words no title uses, the vector near the concept (relevant: the concept's products);
 * - lexical: a SKU typed into the box, the vector uninformative (relevant: that product);
 * - mixed: "brand noun", the vector near the concept (relevant: that brand's products of the concept).
 * The vector side stands in for SigLIP's text→image ranking with the geometry it has, so the table
 * measures the fusion and the keyword side, not the model. recall@10 = |top 10 ∩ relevant| / min(10, |relevant|).
 */
import { sql, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { upsertEmbeddings, vectorLiteral } from '../../src/db/embeddings.js';
import { getProductsByIds } from '../../src/db/products.js';
import { activateModel, getActiveModel } from '../../src/db/models.js';
import type { DB } from '../../src/db/types.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { SelectivityEstimator } from '../../src/search/estimate.js';
import { DEFAULT_FUSION, fuse, keywordSearch } from '../../src/search/keyword.js';
import { nearestNeighbours, searchNeighbours } from '../../src/search/query.js';
import { seededRandom } from '../../test/support/vectors.js';
import { arg, table } from '../lib/report.js';
import { benchDatabase } from './database.js';

const rows = Number(arg('rows', '20000'));
const backend = arg('backend', 'postgres') as 'postgres' | 'pglite';
const nQueries = Number(arg('queries', '60'));
const k = 10;
const dim = 64;
const model = { id: 'bench/hybrid-64', dimension: dim };
const NOUNS = ['kettle', 'lamp', 'backpack', 'sneaker', 'teapot', 'blanket', 'wallet', 'helmet', 'candle', 'umbrella'];
const CONCEPTS = 50; // noun × 5 styles
const BRANDS = ['acme', 'borealis', 'cobalt', 'dunmore', 'elkhorn', 'fjord', 'granite', 'halcyon'];
const rnd = seededRandom(5);
const normalise = (v: number[]) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const centres = Array.from({ length: CONCEPTS }, () => Array.from({ length: dim }, () => rnd.normal()));
const near = (c: number, spread: number) => normalise(centres[c]!.map((x) => x + spread * rnd.normal()));
const conceptOf = (i: number) => i % CONCEPTS;
const nounOf = (c: number) => NOUNS[c % NOUNS.length]!;
const brandOf = (i: number) => BRANDS[Math.floor(i / CONCEPTS) % BRANDS.length]!;
// Two titles in five name the noun; the others describe the product in other words.
const titleOf = (i: number) => (i % 5 < 2 ? `${brandOf(i)} ${nounOf(conceptOf(i))} style ${conceptOf(i)}` : `item ${i} from ${brandOf(i)}`);

const { database, url, stop } = await benchDatabase(backend);
const db = database.db;
console.error(`[bench] ${backend}, ${rows} products`);
await registerModel(db, { ...model, source: 'bench', variant: null });
await activateModel(db, model.id);
const idOf = new Map<number, string>();
for (let start = 0; start < rows; start += 1000) {
  const ns = Array.from({ length: Math.min(1000, rows - start) }, (_, j) => start + j);
  const inserted = await sql<{ id: string; sku: string }>`
    INSERT INTO products (sku, title, category, brand, price, in_stock)
    SELECT 'HB-' || lpad(i::text, 6, '0'), t, 'all', b, 10, true
    FROM unnest(${ns}::int[], ${ns.map(titleOf)}::text[], ${ns.map(brandOf)}::text[]) AS x(i, t, b) RETURNING id, sku`.execute(db);
  for (const r of inserted.rows) idOf.set(Number(r.sku.slice(3)), String(r.id));
  await upsertEmbeddings(
    db,
    ns.map((i) => ({
      productId: idOf.get(i)!,
      modelId: model.id,
      embedding: Float32Array.from(near(conceptOf(i), 0.7)),
      imageSha256: 'c'.repeat(64),
    })),
  );
}
await ensureModelIndex(db, model);
await sql`ANALYZE`.execute(db);

type Labelled = { kind: 'semantic' | 'lexical' | 'mixed'; text: string; vector: string; relevant: Set<string> };
const all = [...idOf.keys()];
const labelled: Labelled[] = [];
for (let j = 0; j < nQueries; j++) {
  const c = j % CONCEPTS;
  const members = all.filter((i) => conceptOf(i) === c);
  if (j % 3 === 0)
    labelled.push({
      kind: 'semantic',
      text: `something like concept ${c} zq${c}`,
      vector: vectorLiteral(near(c, 0.7)),
      relevant: new Set(members.map((i) => idOf.get(i)!)),
    });
  else if (j % 3 === 1) {
    const i = members[(j * 7) % members.length]!;
    labelled.push({
      kind: 'lexical',
      text: `HB-${String(i).padStart(6, '0')}`,
      vector: vectorLiteral(normalise(Array.from({ length: dim }, () => rnd.normal()))),
      relevant: new Set([idOf.get(i)!]),
    });
  } else {
    const b = brandOf(members[j % members.length]!);
    labelled.push({
      kind: 'mixed',
      text: `${b} ${nounOf(c)}`,
      vector: vectorLiteral(near(c, 0.7)),
      relevant: new Set(members.filter((i) => brandOf(i) === b).map((i) => idOf.get(i)!)),
    });
  }
}

const estimator = new SelectivityEstimator(db);
const pool = Math.max(2 * k, 50);
const recall = (found: string[], relevant: Set<string>) =>
  found.slice(0, k).filter((id) => relevant.has(id)).length / Math.min(k, relevant.size);
const sums = new Map<string, { n: number; vector: number; keyword: number; hybrid: number; skuFirst: number }>();
for (const q of labelled) {
  const vec = await searchNeighbours(db, { model, vector: q.vector, filter: null, k: pool }, estimator);
  const kw = await keywordSearch(db, { text: q.text, filter: null, k: pool });
  const hybrid = fuse(vec.neighbours, kw, DEFAULT_FUSION).map((f) => f.product.id);
  const s = sums.get(q.kind) ?? { n: 0, vector: 0, keyword: 0, hybrid: 0, skuFirst: 0 };
  s.n++;
  s.vector += recall(
    vec.neighbours.map((n) => n.product.id),
    q.relevant,
  );
  s.keyword += recall(
    kw.map((m) => m.product.id),
    q.relevant,
  );
  s.hybrid += recall(hybrid, q.relevant);
  if (q.kind === 'lexical' && q.relevant.has(hybrid[0]!)) s.skuFirst++;
  sums.set(q.kind, s);
}
const total = { n: 0, vector: 0, keyword: 0, hybrid: 0 };
const recallRows = [...sums].map(([kind, s]) => {
  total.n += s.n;
  total.vector += s.vector;
  total.keyword += s.keyword;
  total.hybrid += s.hybrid;
  return {
    queries: `${kind} (${s.n})`,
    'VECTOR recall@10': s.vector / s.n,
    'KEYWORD recall@10': s.keyword / s.n,
    'HYBRID recall@10': s.hybrid / s.n,
    'HYBRID SKU at rank 1': kind === 'lexical' ? `${s.skuFirst}/${s.n}` : '',
  };
});
recallRows.push({
  queries: `all (${total.n})`,
  'VECTOR recall@10': total.vector / total.n,
  'KEYWORD recall@10': total.keyword / total.n,
  'HYBRID recall@10': total.hybrid / total.n,
  'HYBRID SKU at rank 1': '',
});
table(
  `Hybrid search recall@10 (${backend}, ${rows} products, ${CONCEPTS} concepts, RRF k=${DEFAULT_FUSION.rrfK}, weights 1:1)`,
  recallRows,
);

// ---- round trips per similarity query (PostgreSQL: counted on the wire, every statement sent) -----------
if (backend === 'postgres' && url) {
  let sent = 0;
  const counted = new pg.Pool({ connectionString: url, max: 2 });
  counted.on('connect', (client) => {
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
      sent++;
      return query(...a);
    };
  });
  const cdb = new Kysely<DB>({ dialect: new PostgresDialect({ pool: counted }) });
  const hot = new SelectivityEstimator(cdb);
  await hot.refresh();
  const trips: Record<string, string | number>[] = [];
  const vectors = labelled.filter((q) => q.kind !== 'lexical').slice(0, 20);
  for (const filter of [null, { brand: 'acme' }]) {
    sent = 0;
    for (const q of vectors) {
      await getActiveModel(cdb); // what the service did before every query
      const r = await nearestNeighbours(cdb, { model, vector: q.vector, filter, k });
      await getProductsByIds(
        cdb,
        r.neighbours.map((n) => n.productId),
      );
    }
    const before = sent / vectors.length;
    sent = 0;
    for (const q of vectors) await searchNeighbours(cdb, { model, vector: q.vector, filter, k }, hot);
    trips.push({
      filter: filter ? 'brand = acme' : 'none',
      'step by step (statements/query)': before,
      'hot path (statements/query)': sent / vectors.length,
    });
  }
  table('Round trips per similarity query (statements sent, BEGIN/COMMIT included)', trips);
  await cdb.destroy();
}
await stop();
