/**
 * Seeding a running service with the generated catalog, through its public upsertProducts mutation
 * (the same path a merchant's import takes): product metadata plus a generated photo as base64.
 */
import {
  perturb,
  renderProductImage,
  syntheticCatalog,
  SHAPES,
  COLOURS,
  type Perturbation,
  type SyntheticProduct,
} from './synthetic-catalog.js';

/** Distinct looks in the generated catalog (shape × colour); products past that reuse a look. */
export const DISTINCT_LOOKS = SHAPES.length * Object.keys(COLOURS).length;
/** Products that reuse a look get a different photo of it, so no two photos are byte-identical. */
const REPEAT_VARIANTS: Perturbation[] = ['crop', 'darker', 'brighter', 'resize'];

export interface DemoProduct extends SyntheticProduct {
  image: Buffer;
}

/** The first n generated products with their photos; the first 80 are distinct looks. */
export async function demoProducts(n: number, seed?: number): Promise<DemoProduct[]> {
  const catalog = syntheticCatalog(n, seed);
  const out: DemoProduct[] = [];
  for (const [i, p] of catalog.entries()) {
    const original = await renderProductImage(p.shape, p.colour);
    const repeat = Math.floor(i / DISTINCT_LOOKS);
    const image = repeat === 0 ? original : await perturb(original, REPEAT_VARIANTS[(repeat - 1) % REPEAT_VARIANTS.length]!);
    out.push({ ...p, image });
  }
  return out;
}

export interface SeedOptions {
  /** Service origin, e.g. http://127.0.0.1:4000 */
  url: string;
  adminToken: string;
  /** Products per mutation (at most 500; default 40). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

const UPSERT = `mutation Seed($products: [ProductInput!]!) { upsertProducts(products: $products) { id sku } }`;

/** Upserts the products (idempotent: upserts match on SKU, unchanged photos are not re-embedded). */
export async function seedOverHttp(products: DemoProduct[], opts: SeedOptions): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  const batchSize = opts.batchSize ?? 40;
  for (let start = 0; start < products.length; start += batchSize) {
    const batch = products.slice(start, start + batchSize).map((p) => ({
      sku: p.sku,
      title: p.title,
      description: p.description,
      category: p.category,
      brand: p.brand,
      price: p.price,
      currency: p.currency,
      inStock: p.inStock,
      attributes: p.attributes,
      image: { base64: p.image.toString('base64') },
    }));
    const res = await fetch(`${opts.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.adminToken}` },
      body: JSON.stringify({ query: UPSERT, variables: { products: batch } }),
    });
    const body = (await res.json()) as {
      data?: { upsertProducts: Array<{ id: string; sku: string }> };
      errors?: Array<{ message: string; extensions?: { code?: string } }>;
    };
    if (body.errors?.length || !body.data) {
      const e = body.errors?.[0];
      throw new Error(
        `seeding failed (HTTP ${res.status}${e?.extensions?.code ? `, ${e.extensions.code}` : ''}): ${e?.message ?? 'no data'}`,
      );
    }
    for (const p of body.data.upsertProducts) ids.set(p.sku, p.id);
    opts.onProgress?.(Math.min(start + batchSize, products.length), products.length);
  }
  return ids;
}

/** How many products the catalog holds (public products query). */
export async function catalogSize(url: string): Promise<number> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ products(first: 1) { totalCount } }' }),
  });
  const body = (await res.json()) as { data?: { products: { totalCount: number } } };
  if (!body.data) throw new Error(`could not count the catalog (HTTP ${res.status})`);
  return body.data.products.totalCount;
}
