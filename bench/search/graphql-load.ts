/**
 * GraphQL end to end under load: `similarProducts(image: { productId })` over HTTP, driven by autocannon
 * from this process, beside the same query called in-process (no HTTP, no GraphQL) in the same run.
 *
 *   npx tsx bench/search/graphql-load.ts [--rows 20000] [--backend postgres|pglite] [--seconds 10] [--connections 8]
 */
import autocannon from 'autocannon';
import { sql } from 'kysely';
import { startService } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { upsertEmbeddings } from '../../src/db/embeddings.js';
import { activateModel } from '../../src/db/models.js';
import { ensureModelIndex } from '../../src/models/hnsw.js';
import { registerModel } from '../../src/models/lifecycle.js';
import { createLogger } from '../../src/log.js';
import { embeddingLikeSpace } from '../../test/support/vectors.js';
import { arg, median, ms, percentile, table } from '../lib/report.js';
import { benchDatabase } from './database.js';

const rows = Number(arg('rows', '20000'));
const backend = arg('backend', 'postgres') as 'postgres' | 'pglite';
const seconds = Number(arg('seconds', '10'));
const connections = Number(arg('connections', '8'));
const dim = 768;
const model = { id: 'bench/clustered-768', dimension: dim };
const space = embeddingLikeSpace({ dimension: dim, seed: 5, clusters: 256 });

const { database, stop } = await benchDatabase(backend);
const db = database.db;
await registerModel(db, { ...model, source: 'bench', variant: null });
await activateModel(db, model.id);
const ids: string[] = [];
for (let start = 0; start < rows; start += 1000) {
  const ord = Array.from({ length: Math.min(1000, rows - start) }, (_, j) => start + j);
  const inserted = await sql<{ id: string }>`
    INSERT INTO products (sku, title, category, price) SELECT 'g-' || i, 'product ' || i, CASE WHEN i % 10 = 0 THEN 'bags' ELSE 'other' END, 10
    FROM unnest(${ord}::int[]) AS t(i) RETURNING id`.execute(db);
  ids.push(...inserted.rows.map((r) => String(r.id)));
  await upsertEmbeddings(
    db,
    inserted.rows.map((r, j) => ({
      productId: String(r.id),
      modelId: model.id,
      embedding: space.vector(ord[j]!),
      imageSha256: 'c'.repeat(64),
    })),
  );
}
await ensureModelIndex(db, model);
await sql`ANALYZE`.execute(db);

const config = loadConfig({ PORT: '0', LOG_LEVEL: 'silent', GRAPHQL_INTROSPECTION: 'false' });
const service = await startService(config, createLogger('silent'), { database, embedder: null });
const query = 'query($id: ID!) { similarProducts(image: { productId: $id }, k: 10) { score product { id title price } } }';
const filtered =
  'query($id: ID!) { similarProducts(image: { productId: $id }, category: "bags", k: 10) { score product { id title price } } }';

async function load(q: string) {
  let n = 0;
  const result = await autocannon({
    url: `${service.http.url}/graphql`,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ query: q, variables: { id: ids[(n++ * 7919) % ids.length] } }) }),
      },
    ],
  });
  return result;
}

const rowsOut: Record<string, string | number>[] = [];
for (const [label, q, category] of [
  ['unfiltered', query, null],
  ['category 10%', filtered, 'bags'],
] as const) {
  const r = await load(q);
  // The same search in-process, sequentially, for the cost of HTTP + GraphQL beside it.
  const times: number[] = [];
  for (let j = 0; j < 200; j++) {
    const t = process.hrtime.bigint();
    await service.services.search.similarToImage({ kind: 'product', id: ids[(j * 7919) % ids.length]! }, { k: 10, category });
    times.push(ms(t));
  }
  rowsOut.push({
    query: label,
    'HTTP req/s': r.requests.average,
    'HTTP p50 ms': r.latency.p50,
    'HTTP p99 ms': r.latency.p99,
    errors: r.errors + r.non2xx,
    'in-process p50 ms (sequential)': median(times),
    'in-process p99 ms': percentile(times, 99),
  });
}
table(
  `GraphQL similarProducts(productId) under load (${backend}, ${rows} rows, ${connections} connections, ${seconds} s, autocannon)`,
  rowsOut,
);
await service.stop();
await stop().catch(() => {});
