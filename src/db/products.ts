/** The products repository: the only place that reads or writes the products table. */
import { sql, type RawBuilder, type Selectable } from 'kysely';
import type { Db, ProductsTable } from './types.js';

export interface Product {
  id: string;
  sku: string;
  title: string;
  description: string | null;
  category: string;
  brand: string | null;
  price: number | null;
  currency: string | null;
  inStock: boolean;
  attributes: Record<string, unknown>;
  imageUrl: string | null;
  imageSha256: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** What an upsert writes: everything but what the database assigns. */
export type ProductWrite = Omit<Product, 'id' | 'createdAt' | 'updatedAt'>;

/** Relational filters shared by catalog listing and similarity search. All conditions AND together. */
export interface ProductFilter {
  category?: string | null;
  categories?: string[] | null;
  brand?: string | null;
  minPrice?: number | null;
  maxPrice?: number | null;
  inStock?: boolean | null;
  /** Only this variant's photos count (product_images.variant; search only). */
  variant?: string | null;
  /** Keys of products.attributes: each entry must hold (AND), with any of its values (OR). */
  attributes?: AttributeFilter[] | null;
}

/** products.attributes[name] is one of values (attributeMatches says what "is" means). */
export interface AttributeFilter {
  name: string;
  values: string[];
}

/**
 * A JSON number as JSON writes it: such a filter value also matches the number (size 42 for "42"). The
 * exponent is kept to 3 digits: jsonb holds numbers as numeric, which refuses 1e1000000 with an error
 * (the value then only matches as a string, which is what it can be in a product).
 */
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?$/;

/**
 * The jsonb documents an attribute value is contained in, as `attributes @> doc` tests them: the string
 * ({"colour":"red"}, what acceptSuggestions writes), an array holding it ({"colour":["red","blue"]}), and
 * for a value that is a JSON number or true/false the number or boolean too ("42" matches 42, and 42.0:
 * jsonb compares numbers by value; "true" matches true), as a merchant's JSON may hold them. Containment,
 * not `attributes ->> name = value`, so that one GIN index on the whole column serves every key
 * (migration 0012).
 */
export function attributeMatches(name: string, value: string): string[] {
  const key = JSON.stringify(name);
  const forms = [JSON.stringify(value)];
  // Written as given (not through JSON.parse): jsonb compares numbers exactly, doubles would round.
  if (JSON_NUMBER.test(value) || value === 'true' || value === 'false') forms.push(value);
  return forms.flatMap((v) => [`{${key}:${v}}`, `{${key}:[${v}]}`]);
}

/** One AttributeFilter over an attributes column: any of its documents contained (an empty list: none). */
function attributeCondition(column: RawBuilder<unknown>, a: AttributeFilter): RawBuilder<boolean> {
  const docs = a.values.flatMap((v) => attributeMatches(a.name, v));
  // A text[] parameter cast to jsonb[]: one parameter per filter, on both backends' array encodings.
  return docs.length ? sql<boolean>`${column} @> ANY(${docs}::text[]::jsonb[])` : sql<boolean>`false`;
}

/**
 * The products columns toProduct() reads, for statements that hydrate products themselves (search):
 * listed, so the generated search_document (a tsvector, large) is not sent back with every match.
 */
export function productColumns(alias: string): RawBuilder<unknown> {
  const cols = [
    'id',
    'sku',
    'title',
    'description',
    'category',
    'brand',
    'price',
    'currency',
    'in_stock',
    'attributes',
    'image_url',
    'image_sha256',
    'created_at',
    'updated_at',
  ];
  return sql.join(cols.map((c) => sql.ref(`${alias}.${c}`)));
}

export function toProduct(row: Selectable<ProductsTable>): Product {
  return {
    id: String(row.id),
    sku: row.sku,
    title: row.title,
    description: row.description,
    category: row.category,
    brand: row.brand,
    price: row.price === null ? null : Number(row.price),
    currency: row.currency,
    inStock: row.in_stock,
    attributes: row.attributes,
    imageUrl: row.image_url,
    imageSha256: row.image_sha256,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/**
 * The WHERE conditions of a ProductFilter over the products table (by its name, or the alias `p` that
 * search/ joins it as), or over product_embeddings as `e`, whose copies of the filter columns have the
 * same names and values (migration 0008), as one SQL expression: usable in `.where()` and sql templates.
 */
export function productFilterCondition(
  filter: ProductFilter | null | undefined,
  table: 'products' | 'p' | 'e' = 'products',
): RawBuilder<boolean> {
  const col = (c: 'category' | 'brand' | 'price' | 'in_stock') => sql.ref(`${table}.${c}`);
  const conds: RawBuilder<boolean>[] = [];
  if (filter?.category != null) conds.push(sql<boolean>`${col('category')} = ${filter.category}`);
  if (filter?.categories != null) {
    // An empty list matches nothing, as the caller asked for no category at all.
    conds.push(filter.categories.length ? sql<boolean>`${col('category')} IN (${sql.join(filter.categories)})` : sql<boolean>`false`);
  }
  if (filter?.brand != null) conds.push(sql<boolean>`${col('brand')} = ${filter.brand}`);
  if (filter?.minPrice != null) conds.push(sql<boolean>`${col('price')} >= ${filter.minPrice}`);
  if (filter?.maxPrice != null) conds.push(sql<boolean>`${col('price')} <= ${filter.maxPrice}`);
  if (filter?.inStock != null) conds.push(sql<boolean>`${col('in_stock')} = ${filter.inStock}`);
  // The variant is a photo's (carried on the vector rows, migration 0010): over products, a product
  // matches when one of its photos shows the variant.
  if (filter?.variant != null) {
    conds.push(
      table === 'e'
        ? sql<boolean>`e.variant = ${filter.variant}`
        : sql<boolean>`EXISTS (SELECT 1 FROM product_images vi WHERE vi.product_id = ${sql.ref(`${table}.id`)} AND vi.variant = ${filter.variant})`,
    );
  }
  // Attributes are not carried on the vector rows (a JSON object of up to 64 KiB, copied per photo and
  // region, and kept equal by a trigger, for a filter few queries use): over `e` they are read from the
  // product by its primary key. In a correlated EXISTS, the same filter in the same WHERE as the carried
  // columns, so the HNSW walk's iterative scan and the exact path count only vectors of products that
  // pass it, as they do for the carried ones ("exactly k whenever k products match").
  const attributes = filter?.attributes ?? [];
  if (attributes.length) {
    if (table === 'e') {
      const each = attributes.map((a) => attributeCondition(sql.ref('ap.attributes'), a));
      conds.push(sql<boolean>`EXISTS (SELECT 1 FROM products ap WHERE ap.id = e.product_id AND ${sql.join(each, sql` AND `)})`);
    } else {
      for (const a of attributes) conds.push(attributeCondition(sql.ref(`${table}.attributes`), a));
    }
  }
  return conds.length ? sql<boolean>`(${sql.join(conds, sql` AND `)})` : sql<boolean>`true`;
}

export async function getProduct(db: Db, id: string): Promise<Product | null> {
  const row = await db.selectFrom('products').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toProduct(row) : null;
}

export async function getProductsByIds(db: Db, ids: string[]): Promise<Map<string, Product>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('products').selectAll().where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [String(r.id), toProduct(r)]));
}

export async function getProductsBySkus(db: Db, skus: string[]): Promise<Map<string, Product>> {
  if (skus.length === 0) return new Map();
  const rows = await db.selectFrom('products').selectAll().where('sku', 'in', skus).execute();
  return new Map(rows.map((r) => [r.sku, toProduct(r)]));
}

/**
 * Products by id and by SKU in one statement (a federation gateway's batch of entity references mixes
 * both keys): the caller matches the rows back to its references.
 */
export async function getProductsByKeys(db: Db, keys: { ids: string[]; skus: string[] }): Promise<Product[]> {
  const { ids, skus } = keys;
  if (ids.length === 0 && skus.length === 0) return [];
  const rows = await db
    .selectFrom('products')
    .selectAll()
    .where((eb) => eb.or([...(ids.length ? [eb('id', 'in', ids)] : []), ...(skus.length ? [eb('sku', 'in', skus)] : [])]))
    .execute();
  return rows.map(toProduct);
}

/** One page in id order (stable: ids never change) after the given id. Fetches first+1 to know if more exist. */
export async function listProducts(
  db: Db,
  opts: { filter?: ProductFilter | null; first: number; afterId?: string | null },
): Promise<{ products: Product[]; hasNextPage: boolean }> {
  let q = db.selectFrom('products').selectAll().where(productFilterCondition(opts.filter));
  if (opts.afterId != null) q = q.where('id', '>', opts.afterId);
  const rows = await q
    .orderBy('id')
    .limit(opts.first + 1)
    .execute();
  return { products: rows.slice(0, opts.first).map(toProduct), hasNextPage: rows.length > opts.first };
}

export async function countProducts(db: Db, filter?: ProductFilter | null): Promise<number> {
  const row = await db
    .selectFrom('products')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where(productFilterCondition(filter))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Inserts or updates by SKU; returns the stored rows in input order. Call inside a transaction for all-or-nothing.
 * A changed category, brand, price or stock is copied to the product's vector rows by a trigger in the
 * same statement (migration 0008), so search's filters on product_embeddings follow without code here.
 */
export async function upsertProductRows(db: Db, products: ProductWrite[]): Promise<Product[]> {
  if (products.length === 0) return [];
  const rows = await db
    .insertInto('products')
    .values(
      products.map((p) => ({
        sku: p.sku,
        title: p.title,
        description: p.description,
        category: p.category,
        brand: p.brand,
        price: p.price,
        currency: p.currency,
        in_stock: p.inStock,
        attributes: JSON.stringify(p.attributes),
        image_url: p.imageUrl,
        image_sha256: p.imageSha256,
      })),
    )
    .onConflict((oc) =>
      oc.column('sku').doUpdateSet((eb) => ({
        title: eb.ref('excluded.title'),
        description: eb.ref('excluded.description'),
        category: eb.ref('excluded.category'),
        brand: eb.ref('excluded.brand'),
        price: eb.ref('excluded.price'),
        currency: eb.ref('excluded.currency'),
        in_stock: eb.ref('excluded.in_stock'),
        attributes: eb.ref('excluded.attributes'),
        // An upsert without an image keeps the product's current image (and so its vectors).
        image_url: sql`CASE WHEN excluded.image_url IS NULL AND excluded.image_sha256 IS NULL THEN products.image_url ELSE excluded.image_url END`,
        image_sha256: sql`CASE WHEN excluded.image_url IS NULL AND excluded.image_sha256 IS NULL THEN products.image_sha256 ELSE excluded.image_sha256 END`,
        updated_at: sql`now()`,
      })),
    )
    .returningAll()
    .execute();
  const bySku = new Map(rows.map((r) => [r.sku, toProduct(r)]));
  return products.map((p) => bySku.get(p.sku)!);
}

/** Sets the products' main image (image_url, image_sha256: their first photo's), e.g. to none. */
export async function setMainImage(db: Db, ids: string[], image: { url: string | null; sha256: string } | null): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('products')
    .set({ image_url: image?.url ?? null, image_sha256: image?.sha256 ?? null, updated_at: sql`now()` })
    .where('id', 'in', ids)
    .execute();
}

export async function deleteProductRow(db: Db, id: string): Promise<boolean> {
  const res = await db.deleteFrom('products').where('id', '=', id).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}
