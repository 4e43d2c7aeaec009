/** Kysely's view of the schema in migrations/. Keep in step with the migrations. */
import type { ColumnType, Generated, Kysely, Transaction } from 'kysely';

export interface ProductsTable {
  id: ColumnType<string, never, never>; // bigint identity; node-postgres returns int8 as string
  sku: string;
  title: string;
  description: string | null;
  category: string;
  brand: string | null;
  price: ColumnType<string | null, number | string | null, number | string | null>; // numeric(12,2)
  currency: string | null;
  in_stock: Generated<boolean>;
  attributes: ColumnType<Record<string, unknown>, string, string>;
  image_url: string | null;
  image_sha256: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  /** Generated full-text document (migrations/0006_product_search.ts): read by keyword search, never written. */
  search_document: ColumnType<string, never, never>;
}

export interface EmbeddingModelsTable {
  id: string;
  source: string;
  variant: string | null;
  dimension: number;
  status: Generated<'building' | 'ready' | 'retired'>;
  is_active: Generated<boolean>;
  created_at: Generated<Date>;
  activated_at: Date | null;
  /** Ingest embeds for it although neither active nor building (migration 0006). */
  keep_current: Generated<boolean>;
}

export interface ProductEmbeddingsTable {
  product_id: string;
  model_id: string;
  /** The photo embedded (migration 0010); null only for a vector of an image that is not stored. */
  image_id: string | null;
  /** 0: the whole photo; n ≥ 1: the crop of the photo's n-th region. */
  region: Generated<number>;
  embedding: string; // pgvector text form '[x,y,...]' (pgvector's toSql / fromSql)
  image_sha256: string;
  created_at: Generated<Date>;
  /** Copies of the product's filter columns, set by triggers (migration 0008); never written by the app. */
  category: Generated<string | null>;
  brand: Generated<string | null>;
  price: Generated<string | null>;
  in_stock: Generated<boolean | null>;
  /** Copy of the image's variant, set by triggers (migration 0010). */
  variant: Generated<string | null>;
}

/** A region of interest: fractions of the image's width and height. */
export interface RegionBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface ProductImagesTable {
  id: ColumnType<string, never, never>; // bigint identity
  product_id: string;
  position: number;
  label: string | null;
  variant: string | null;
  regions: ColumnType<RegionBox[], string, string>;
  source_url: string | null;
  sha256: string;
  format: string;
  width: number;
  height: number;
  original: Buffer;
  thumbnail: Buffer;
  created_at: Generated<Date>;
}

export interface ReindexJobsTable {
  id: ColumnType<string, never, never>;
  model_id: string;
  only_missing: Generated<boolean>;
  activate: Generated<boolean>;
  state: Generated<'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'>;
  queue_job_id: string | null;
  total: Generated<number>;
  processed: Generated<number>;
  failed: Generated<number>;
  cursor: ColumnType<string, string | number | undefined, string | number>; // bigint
  pass: Generated<number>;
  errors: ColumnType<Array<{ productId: string; sku: string | null; message: string }>, string | undefined, string>;
  error: string | null;
  activated: Generated<boolean>;
  attempts: Generated<number>;
  worker_id: string | null;
  heartbeat_at: Date | null;
  run_started_at: Date | null;
  run_processed: Generated<number>;
  created_at: Generated<Date>;
  started_at: Date | null;
  finished_at: Date | null;
}

export interface DB {
  products: ProductsTable;
  embedding_models: EmbeddingModelsTable;
  product_embeddings: ProductEmbeddingsTable;
  product_images: ProductImagesTable;
  reindex_jobs: ReindexJobsTable;
}

/** What a repository function runs on: the database, or a transaction its caller opened. */
export type Db = Kysely<DB> | Transaction<DB>;
