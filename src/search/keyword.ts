/**
 * Keyword search: PostgreSQL full-text search over products.search_document (SKU, brand, title,
 * description; migrations/0006_product_search.ts), with the same filters as similarity search, in one
 * statement that also hydrates the products.
 *
 * The query text is parsed twice and OR-ed: with the catalog's language (search_settings.language,
 * migrations/0009: stems, as title and description were indexed; read inside the statement, so a query
 * is parsed as the documents it searches were built, on a replica too) and with 'simple' (identifiers
 * kept whole, as SKU and brand were). A text that is exactly a
 * product's SKU or brand (any case) ranks those products first: a shopper who types an identifier
 * wants that product, whatever the prose says.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import { productColumns, productFilterCondition, toProduct, type Product, type ProductFilter } from '../db/products.js';
import type { DB, ProductsTable } from '../db/types.js';

export interface KeywordMatch {
  product: Product;
  /** ts_rank_cd normalised to 0…1 (rank / (rank + 1)). */
  rank: number;
  /** The text is this product's SKU or brand. */
  identifier: boolean;
}

type Row = Selectable<ProductsTable> & { rank: number; identifier: boolean };

export async function keywordSearch(db: Kysely<DB>, q: { text: string; filter: ProductFilter | null; k: number }): Promise<KeywordMatch[]> {
  const text = q.text.trim();
  const rows = await sql<Row>`
    WITH q AS (
      SELECT websearch_to_tsquery(coalesce((SELECT language FROM search_settings), 'english'::regconfig), ${text}) ||
             websearch_to_tsquery('simple', ${text}) AS tq,
             lower(${text}) AS lt
    )
    SELECT ${productColumns('p')},
           ts_rank_cd(p.search_document, q.tq, 32)::float8 AS rank,
           (lower(p.sku) = q.lt OR lower(p.brand) = q.lt) AS identifier
    FROM products p, q
    WHERE (p.search_document @@ q.tq OR lower(p.sku) = q.lt OR lower(p.brand) = q.lt)
      AND ${productFilterCondition(q.filter, 'p')}
    ORDER BY identifier DESC, rank DESC, p.id
    LIMIT ${q.k}`.execute(db);
  return rows.rows.map((r) => ({ product: toProduct(r), rank: Number(r.rank), identifier: r.identifier === true }));
}

export interface FusionWeights {
  vector: number;
  keyword: number;
  /** The RRF constant: larger flattens the difference between ranks. */
  rrfK: number;
}

export const DEFAULT_FUSION: FusionWeights = { vector: 1, keyword: 1, rrfK: 60 };

export interface FusedMatch {
  product: Product;
  fused: number;
  identifier: boolean;
  /** Cosine distance when the vector side found the product, else null. */
  distance: number | null;
}

/**
 * Reciprocal rank fusion of the two rankings: each list contributes weight / (rrfK + rank), so neither
 * side's score scale matters, only its order. Identifier matches (SKU, brand) stay first; ties go by
 * product id, so the order is total and pages are stable.
 */
export function fuse(vector: Array<{ product: Product; distance: number }>, keyword: KeywordMatch[], w: FusionWeights): FusedMatch[] {
  const byId = new Map<string, FusedMatch>();
  const entry = (product: Product) => {
    let e = byId.get(product.id);
    if (!e) byId.set(product.id, (e = { product, fused: 0, identifier: false, distance: null }));
    return e;
  };
  vector.forEach((v, i) => {
    const e = entry(v.product);
    e.fused += w.vector / (w.rrfK + i + 1);
    e.distance = v.distance;
  });
  keyword.forEach((m, i) => {
    const e = entry(m.product);
    e.fused += w.keyword / (w.rrfK + i + 1);
    e.identifier ||= m.identifier;
  });
  return [...byId.values()].sort(
    (a, b) => Number(b.identifier) - Number(a.identifier) || b.fused - a.fused || compareIds(a.product.id, b.product.id),
  );
}

/** Ids are bigints as strings: shorter is smaller. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
