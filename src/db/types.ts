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
  /** 'reindex' or 'tag' (migration 0011). */
  kind: Generated<'reindex' | 'tag'>;
  /** A tagging run's taxonomy (migration 0011); null for a reindex. */
  taxonomy: ColumnType<TagTaxonomy | null, string | null | undefined, string | null>;
}

/** What a tagging run classifies by (reindex_jobs.taxonomy). */
export interface TagTaxonomy {
  attribute: string;
  labels: string[];
  template: string;
  onlyMissing: boolean;
}

export interface TagSuggestionsTable {
  product_id: string;
  attribute: string;
  rank: number;
  label: string;
  probability: number;
  score: number;
  model_id: string;
  job_id: string | null;
  created_at: Generated<Date>;
}

export interface TagAcceptancesTable {
  id: ColumnType<string, never, never>;
  attribute: string;
  target: 'category' | 'attributes';
  min_probability: number;
  accepted: number;
  skipped: number;
  accepted_at: Generated<Date>;
}

export interface TagAcceptanceItemsTable {
  acceptance_id: string;
  product_id: string;
  label: string;
  probability: number;
  model_id: string;
}

export interface DuplicateScansTable {
  model_id: string;
  threshold: number;
  neighbours: number;
  products: number;
  pairs: number;
  groups: number;
  duration_ms: number;
  scanned_at: Generated<Date>;
}

export interface DuplicatePairsTable {
  model_id: string;
  product_a: string;
  product_b: string;
  score: number;
}

export interface DuplicateGroupsTable {
  model_id: string;
  product_id: string;
  group_id: string;
}

export interface DB {
  products: ProductsTable;
  embedding_models: EmbeddingModelsTable;
  product_embeddings: ProductEmbeddingsTable;
  product_images: ProductImagesTable;
  reindex_jobs: ReindexJobsTable;
  tag_suggestions: TagSuggestionsTable;
  tag_acceptances: TagAcceptancesTable;
  tag_acceptance_items: TagAcceptanceItemsTable;
  duplicate_scans: DuplicateScansTable;
  duplicate_pairs: DuplicatePairsTable;
  duplicate_groups: DuplicateGroupsTable;
}

/** What a repository function runs on: the database, or a transaction its caller opened. */
export type Db = Kysely<DB> | Transaction<DB>;
