// Filtering by product attributes (ProductFilter.attributes; issue 25's accepted suggestions go into
// products.attributes, and a shopper's search narrows on them): one GIN index over the whole column,
// jsonb_path_ops, serves `attributes @> doc` for every key, so neither a new attribute nor a tagging run
// needs a migration. jsonb_path_ops over jsonb_ops: smaller (one hash per path to a value, not one entry
// per key and value) and it supports the containment the filter uses; it cannot answer key-exists (?),
// which nothing asks.
//
// The index answers the listing (products with an attribute filter) and the exact search path, which
// finds the matching products through it and then their vectors by product id; the HNSW walk tests the
// filter per candidate on the product's row (primary key) instead. The attributes are not carried onto
// product_embeddings as the columns of migration 0008 are (see src/db/products.ts).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX products_attributes_idx ON products USING gin (attributes jsonb_path_ops)`.execute(db);
  await sql`COMMENT ON INDEX products_attributes_idx IS ${sql.lit(
    'Containment (attributes @> ...) on any key of products.attributes: ProductFilter.attributes, on listing and on the exact search path.',
  )}`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX products_attributes_idx`.execute(db);
}
