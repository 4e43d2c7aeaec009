/**
 * Apollo Federation 2: a real gateway (@apollo/gateway, IntrospectAndCompose) composes this service with a
 * second subgraph written here, an "inventory" service of the kind a shop already runs (the Product entity
 * extended with a field of its own, keyed by SKU, as in Apollo's federation docs). A photo search through
 * the gateway reads that field; the inventory service's own product list is resolved by this service's
 * `_entities` in one statement per batch; the budget and the masking hold for `_entities`.
 */
import { ApolloGateway, IntrospectAndCompose } from '@apollo/gateway';
import { composeServices } from '@apollo/composition';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage, syntheticCatalog } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN, codes, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { countStatementsFrom } from '../support/statement-count.js';

const catalog = syntheticCatalog(12, 5);
const images = new Map<string, Buffer>();
const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id sku } }`;

// The inventory subgraph: stock per SKU, and its own list of products (references by SKU only).
const inventoryOf = (sku: string) => [...sku].reduce((n, c) => n + c.charCodeAt(0), 0) % 97;
const INVENTORY_SDL = `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])
  type Product @key(fields: "sku") {
    sku: String!
    "Units on hand right now, from the warehouse system."
    liveInventory: Int!
  }
  type Query {
    "Products the warehouse is low on (references: this subgraph knows only their SKUs)."
    lowStock: [Product]!
  }`;
let lowStock: string[] = [];

let t: TestService;
let inventory: ApolloServer;
let gateway: ApolloServer;
let inventoryUrl: string;

beforeAll(async () => {
  t = await startTestService({}, { model: await tinyModelDir() });
  for (const p of catalog) images.set(p.sku, await renderProductImage(p.shape, p.colour, { size: 128 }));
  const res = await t.gql(
    UPSERT,
    {
      p: catalog.map((p) => ({
        sku: p.sku,
        title: p.title,
        category: p.category,
        image: { base64: images.get(p.sku)!.toString('base64') },
      })),
    },
    { admin: true },
  );
  expect(res.errors).toBeUndefined();

  inventory = new ApolloServer({
    schema: buildSubgraphSchema([
      {
        typeDefs: parse(INVENTORY_SDL),
        resolvers: {
          Product: { __resolveReference: (ref: { sku: string }) => ({ sku: ref.sku, liveInventory: inventoryOf(ref.sku) }) },
          Query: { lowStock: () => lowStock.map((sku) => ({ sku, liveInventory: inventoryOf(sku) })) },
        } as never,
      },
    ]),
    plugins: [ApolloServerPluginInlineTraceDisabled()],
  });
  ({ url: inventoryUrl } = await startStandaloneServer(inventory, { listen: { host: '127.0.0.1', port: 0 } }));

  gateway = new ApolloServer({
    gateway: new ApolloGateway({
      supergraphSdl: new IntrospectAndCompose({
        subgraphs: [
          { name: 'search', url: `${t.url}/graphql` },
          { name: 'inventory', url: inventoryUrl },
        ],
      }),
    }),
  });
  await gateway.start();
}, 180_000);
afterAll(async () => {
  await gateway?.stop();
  await inventory?.stop();
  await t?.stop();
});

async function throughGateway<T = any>(query: string, variables?: Record<string, unknown>) {
  const res = await gateway.executeOperation({ query, ...(variables ? { variables } : {}) });
  if (res.body.kind !== 'single') throw new Error('expected a single result');
  return res.body.singleResult as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

describe('through a gateway', () => {
  it('runs a photo search here and reads the inventory subgraph field on each match', async () => {
    const query = catalog[3]!;
    const res = await throughGateway(
      `query($image: ImageInput!) { similarProducts(image: $image, k: 5) { score product { id sku title liveInventory } } }`,
      { image: { base64: images.get(query.sku)!.toString('base64') } },
    );
    expect(res.errors).toBeUndefined();
    const matches = res.data.similarProducts as Array<{ product: { sku: string; title: string; liveInventory: number } }>;
    expect(matches).toHaveLength(5);
    expect(matches[0]!.product.sku).toBe(query.sku); // the photo's own product first
    for (const m of matches) expect(m.product.liveInventory).toBe(inventoryOf(m.product.sku));
  });

  it("resolves the other subgraph's product references by SKU here, in one statement per batch", async () => {
    lowStock = [catalog[0]!.sku, catalog[5]!.sku, 'NOT-IN-THE-CATALOG', catalog[9]!.sku, catalog[2]!.sku];
    let res: Awaited<ReturnType<typeof throughGateway<any>>> | undefined;
    const statements = await countStatementsFrom(t, 'products', async () => {
      res = await throughGateway(`{ lowStock { sku title category liveInventory } }`);
    });
    expect(res!.errors).toBeUndefined();
    const rows = res!.data.lowStock as Array<{ sku: string; title: string | null } | null>;
    // A reference this service does not know resolves to null (as Query.product does), the others to their products.
    expect(rows.map((r) => r?.title ?? null)).toEqual(lowStock.map((sku) => catalog.find((p) => p.sku === sku)?.title ?? null));
    expect(statements).toBe(1);
  });
});

describe("this service's subgraph API, as a router calls it", () => {
  it('resolves references by id and by SKU mixed in one _entities batch, with one statement', async () => {
    const ids = (await t.gql(`{ products(first: 3) { edges { node { id sku } } } }`)).data.products.edges.map(
      (e: { node: { id: string; sku: string } }) => e.node,
    ) as Array<{ id: string; sku: string }>;
    const representations = [
      { __typename: 'Product', id: ids[0]!.id },
      { __typename: 'Product', sku: ids[1]!.sku },
      { __typename: 'Product', id: 'not-an-id' },
      { __typename: 'Product', id: ids[2]!.id },
    ];
    let res: Awaited<ReturnType<TestService['gql']>> | undefined;
    const statements = await countStatementsFrom(t, 'products', async () => {
      res = await t.gql(`query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id sku } } }`, { r: representations });
    });
    expect(res!.errors).toBeUndefined();
    expect((res!.data as { _entities: unknown })._entities).toEqual([ids[0], ids[1], null, ids[2]]);
    expect(statements).toBe(1);
  });

  it('gives its SDL, which composes with the inventory subgraph', async () => {
    const sdl = (await t.gql(`{ _service { sdl } }`)).data._service.sdl as string;
    expect(sdl).toMatch(/@key\(fields: "sku"\)/);
    const composed = composeServices([
      { name: 'search', url: `${t.url}/graphql`, typeDefs: parse(sdl) },
      { name: 'inventory', url: inventoryUrl, typeDefs: parse(INVENTORY_SDL) },
    ]);
    expect(composed.errors).toBeUndefined();
  });

  it('counts _entities references in the budget like a products page', async () => {
    // BUDGET_PAGE_FIRST is 500 by default: a batch of 501 references is over it before anything runs.
    const r = Array.from({ length: 501 }, (_, i) => ({ __typename: 'Product', id: String(i + 1) }));
    const res = await t.gql(`query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id } } }`, { r });
    expect(res.status).toBe(400);
    expect(codes(res)).toEqual(['BUDGET_EXCEEDED']);
    expect(res.errors![0]!.extensions).toMatchObject({ limit: 'pageFirst', requested: 501 });
  });

  it('masks a database error in _entities, then keeps serving', async () => {
    const { id } = (await t.gql(`{ products(first: 1) { edges { node { id } } } }`)).data.products.edges[0].node;
    const db = t.service.services.database.db;
    await sql`ALTER TABLE products RENAME TO products_gone`.execute(db);
    try {
      const res = await t.gql(`query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id } } }`, {
        r: [{ __typename: 'Product', id }],
      });
      expect(codes(res)).toEqual(['INTERNAL_SERVER_ERROR']);
      expect(JSON.stringify(res.errors)).not.toMatch(/relation|products_gone|does not exist|select/i);
    } finally {
      await sql`ALTER TABLE products_gone RENAME TO products`.execute(db);
    }
    expect((await t.gql(`{ product(id: "${id}") { id } }`)).data.product).toEqual({ id });
  });
});

it('answers _service only to the admin token while introspection is off', async () => {
  const closed = await startTestService({ GRAPHQL_INTROSPECTION: 'false' });
  try {
    const anonymous = await closed.gql(`{ _service { sdl } }`);
    expect(codes(anonymous)).toEqual(['FORBIDDEN']);
    const admin = await closed.gql(`{ _service { sdl } }`, undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(admin.errors).toBeUndefined();
    expect(admin.data._service.sdl).toMatch(/type Product/);
  } finally {
    await closed.stop();
  }
});
