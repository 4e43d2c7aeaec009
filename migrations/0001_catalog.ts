// Catalog schema: products, embedding models, and product embeddings side by side.
// Migrations are forward-only history: never edit a landed file, add the next number instead.
// They import nothing from src/ so that they mean the same thing forever.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE EXTENSION IF NOT EXISTS vector`.execute(db);

  await sql`
    CREATE TABLE products (
      id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      sku           text NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 128),
      title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
      description   text CHECK (length(description) <= 10000),
      category      text NOT NULL CHECK (length(category) BETWEEN 1 AND 128),
      brand         text CHECK (length(brand) <= 128),
      price         numeric(12,2) CHECK (price >= 0),
      currency      char(3) CHECK (currency ~ '^[A-Z]{3}$'),
      in_stock      boolean NOT NULL DEFAULT true,
      attributes    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
      image_url     text,
      image_sha256  text CHECK (image_sha256 ~ '^[0-9a-f]{64}$'),
      created_at    timestamptz NOT NULL DEFAULT now(),
      updated_at    timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  // B-trees on the filter columns: they let the planner answer selective filters exactly
  // (and let search choose an exact scan over the HNSW index when a filter is rare).
  await sql`CREATE INDEX products_category_idx ON products (category)`.execute(db);
  await sql`CREATE INDEX products_brand_idx ON products (brand)`.execute(db);
  await sql`CREATE INDEX products_price_idx ON products (price)`.execute(db);
  await sql`CREATE INDEX products_in_stock_idx ON products (in_stock)`.execute(db);

  await sql`
    CREATE TABLE embedding_models (
      id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$'),
      source      text NOT NULL,
      variant     text,
      dimension   integer NOT NULL CHECK (dimension BETWEEN 1 AND 4000),
      status      text NOT NULL DEFAULT 'building' CHECK (status IN ('building', 'ready', 'retired')),
      is_active   boolean NOT NULL DEFAULT false,
      created_at  timestamptz NOT NULL DEFAULT now(),
      activated_at timestamptz
    )`.execute(db);
  // At most one active model: search reads only its vectors and never mixes models.
  await sql`CREATE UNIQUE INDEX embedding_models_one_active ON embedding_models ((true)) WHERE is_active`.execute(db);

  // halfvec without a fixed dimension, so several models of different sizes can coexist; each model
  // gets its own partial HNSW expression index (created by the application when the model is
  // registered) over embedding::halfvec(<dimension>). A 768-d halfvec row is ~1.6 kB, under the
  // ~2 kB TOAST threshold, so vectors stay inline in the heap (see docs/ARCHITECTURE.md).
  await sql`
    CREATE TABLE product_embeddings (
      product_id    bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      model_id      text NOT NULL REFERENCES embedding_models (id) ON DELETE CASCADE,
      embedding     halfvec NOT NULL,
      image_sha256  text NOT NULL CHECK (image_sha256 ~ '^[0-9a-f]{64}$'),
      created_at    timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (product_id, model_id)
    )`.execute(db);
  await sql`CREATE INDEX product_embeddings_model_idx ON product_embeddings (model_id)`.execute(db);

  const comments: Array<[string, string]> = [
    [
      'TABLE products',
      'The catalog: one row per product, keyed by the merchant SKU. Written by the upsertProducts mutation and the import CLI.',
    ],
    ['COLUMN products.id', 'Surrogate key; the GraphQL Product.id.'],
    ['COLUMN products.sku', 'Merchant stock-keeping unit; unique; upserts match on it.'],
    ['COLUMN products.title', 'Display title shown to shoppers.'],
    ['COLUMN products.description', 'Free-text description (optional, at most 10000 characters).'],
    ['COLUMN products.category', 'Category name used by search filters (exact match).'],
    ['COLUMN products.brand', 'Brand name used by search filters (exact match; optional).'],
    ['COLUMN products.price', 'Unit price in the currency of the row, two decimals; NULL when unknown.'],
    ['COLUMN products.currency', 'ISO 4217 currency code of price, e.g. EUR.'],
    ['COLUMN products.in_stock', 'Whether the product can be ordered now.'],
    ['COLUMN products.attributes', 'Free-form JSON object of further attributes (colour, size, material...).'],
    ['COLUMN products.image_url', 'Where the product image came from when ingested by URL; NULL when uploaded as bytes.'],
    ['COLUMN products.image_sha256', 'Hex SHA-256 of the product image bytes; unchanged bytes are not re-embedded.'],
    ['COLUMN products.created_at', 'When the row was first inserted.'],
    ['COLUMN products.updated_at', 'When the row was last changed by an upsert.'],
    ['TABLE embedding_models', 'Registry of embedding models whose vectors are (or were) stored; exactly one is active for search.'],
    ['COLUMN embedding_models.id', 'Model identifier, e.g. siglip2-base-patch16-224; product_embeddings.model_id refers to it.'],
    ['COLUMN embedding_models.source', 'Where the model files came from (hub repository id or local directory name).'],
    ['COLUMN embedding_models.variant', 'ONNX file variant (e.g. fp16, quantized); NULL for the default float32 export.'],
    ['COLUMN embedding_models.dimension', 'Length of the vectors this model produces.'],
    ['COLUMN embedding_models.status', 'building: vectors being computed; ready: complete and indexed; retired: kept for rollback only.'],
    ['COLUMN embedding_models.is_active', 'True for the one model whose vectors search reads.'],
    ['COLUMN embedding_models.created_at', 'When the model was registered.'],
    ['COLUMN embedding_models.activated_at', 'When the model last became the active one.'],
    ['TABLE product_embeddings', 'Image embeddings: one L2-normalised vector per (product, model), stored as halfvec.'],
    ['COLUMN product_embeddings.product_id', 'The product whose image was embedded; rows go when the product goes.'],
    ['COLUMN product_embeddings.model_id', 'The model that computed the vector.'],
    ['COLUMN product_embeddings.embedding', 'L2-normalised image embedding (half precision). Cosine distance: embedding <=> other.'],
    ['COLUMN product_embeddings.image_sha256', 'SHA-256 of the image bytes the vector was computed from.'],
    ['COLUMN product_embeddings.created_at', 'When the vector was computed.'],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE product_embeddings`.execute(db);
  await sql`DROP TABLE embedding_models`.execute(db);
  await sql`DROP TABLE products`.execute(db);
}
