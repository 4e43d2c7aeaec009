// Catalog intelligence (issue 25): zero-shot tag suggestions for products, their acceptance into the
// product, and near-duplicate products found through the model's HNSW index.
//
// A tagging run is a durable job like a reindex, on the same machinery (queue, lease, heartbeat, resume,
// cancel): reindex_jobs gets a kind ('reindex' or 'tag') and, for a tagging run, its taxonomy. The one-open-
// job rule stays per model for reindexes and becomes per attribute for tagging runs.
//
// Suggestions live in their own table and never in the product: merchant data is only changed by an
// acceptance (acceptSuggestions), which fills a product's attribute only where the merchant left it empty
// and records what it wrote (tag_acceptances, tag_acceptance_items).
//
// Near-duplicates are the result of the last scan per model: the pairs found (cosine ≥ the scan's
// threshold) and the groups they connect (duplicate_groups, read by similarProducts' collapseDuplicates).
import { sql, type Kysely } from 'kysely';

const OPEN = sql.raw(`state IN ('queued', 'running')`);

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE reindex_jobs ADD COLUMN kind text NOT NULL DEFAULT 'reindex' CHECK (kind IN ('reindex', 'tag'))`.execute(db);
  await sql`ALTER TABLE reindex_jobs ADD COLUMN taxonomy jsonb CHECK ((kind = 'tag') = (taxonomy IS NOT NULL))`.execute(db);
  await sql`DROP INDEX reindex_jobs_one_open_per_model`.execute(db);
  await sql`CREATE UNIQUE INDEX reindex_jobs_one_open_per_model ON reindex_jobs (model_id) WHERE kind = 'reindex' AND ${OPEN}`.execute(db);
  await sql`CREATE UNIQUE INDEX reindex_jobs_one_open_tagging_per_attribute ON reindex_jobs ((taxonomy ->> 'attribute')) WHERE kind = 'tag' AND ${OPEN}`.execute(
    db,
  );

  await sql`
    CREATE TABLE tag_suggestions (
      product_id  bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      attribute   text NOT NULL CHECK (length(attribute) BETWEEN 1 AND 64),
      rank        smallint NOT NULL CHECK (rank >= 1),
      label       text NOT NULL CHECK (length(label) BETWEEN 1 AND 128),
      probability double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
      score       double precision NOT NULL,
      model_id    text NOT NULL REFERENCES embedding_models (id) ON DELETE CASCADE,
      job_id      bigint REFERENCES reindex_jobs (id) ON DELETE SET NULL,
      created_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (product_id, attribute, rank)
    )`.execute(db);
  await sql`CREATE INDEX tag_suggestions_attribute_idx ON tag_suggestions (attribute, probability DESC) WHERE rank = 1`.execute(db);

  await sql`
    CREATE TABLE tag_acceptances (
      id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      attribute       text NOT NULL,
      target          text NOT NULL CHECK (target IN ('category', 'attributes')),
      min_probability double precision NOT NULL CHECK (min_probability BETWEEN 0 AND 1),
      accepted        integer NOT NULL CHECK (accepted >= 0),
      skipped         integer NOT NULL CHECK (skipped >= 0),
      accepted_at     timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE tag_acceptance_items (
      acceptance_id bigint NOT NULL REFERENCES tag_acceptances (id) ON DELETE CASCADE,
      product_id    bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      label         text NOT NULL,
      probability   double precision NOT NULL,
      model_id      text NOT NULL,
      PRIMARY KEY (acceptance_id, product_id)
    )`.execute(db);

  await sql`
    CREATE TABLE duplicate_scans (
      model_id    text PRIMARY KEY REFERENCES embedding_models (id) ON DELETE CASCADE,
      threshold   double precision NOT NULL CHECK (threshold > 0 AND threshold <= 1),
      neighbours  integer NOT NULL CHECK (neighbours >= 1),
      products    integer NOT NULL,
      pairs       integer NOT NULL,
      groups      integer NOT NULL,
      duration_ms integer NOT NULL,
      scanned_at  timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE duplicate_pairs (
      model_id  text NOT NULL REFERENCES duplicate_scans (model_id) ON DELETE CASCADE,
      product_a bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      product_b bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      score     double precision NOT NULL,
      PRIMARY KEY (model_id, product_a, product_b),
      CHECK (product_a < product_b)
    )`.execute(db);
  await sql`CREATE INDEX duplicate_pairs_b_idx ON duplicate_pairs (model_id, product_b)`.execute(db);
  await sql`
    CREATE TABLE duplicate_groups (
      model_id   text NOT NULL REFERENCES duplicate_scans (model_id) ON DELETE CASCADE,
      product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
      group_id   bigint NOT NULL,
      PRIMARY KEY (model_id, product_id)
    )`.execute(db);
  await sql`CREATE INDEX duplicate_groups_group_idx ON duplicate_groups (model_id, group_id)`.execute(db);

  const comments: Array<[string, string]> = [
    ['COLUMN reindex_jobs.kind', "What the job does: 'reindex' (re-embed the catalog with a model) or 'tag' (zero-shot tagging run)."],
    [
      'COLUMN reindex_jobs.taxonomy',
      "A tagging run's taxonomy: {attribute, labels, template, onlyMissing}; NULL for a reindex. For a tagging run, cursor, processed and total count products.",
    ],
    [
      'TABLE tag_suggestions',
      "Zero-shot suggestions of a tagging run: a product's best labels for an attribute (rank 1 the most probable), from its photos' stored vectors. Never copied into the product except by an acceptance.",
    ],
    ['COLUMN tag_suggestions.product_id', 'The product.'],
    ['COLUMN tag_suggestions.attribute', "The attribute the taxonomy names: 'category' or a key of products.attributes."],
    ['COLUMN tag_suggestions.rank', '1 for the most probable label of the product for this attribute, 2 the next, ...'],
    ['COLUMN tag_suggestions.label', 'The suggested label.'],
    [
      'COLUMN tag_suggestions.probability',
      "SigLIP's calibrated probability that the label's prompt describes the product's best photo for it (sigmoid(exp(logit_scale)·cos + logit_bias)); labels are independent, not summing to 1.",
    ],
    ['COLUMN tag_suggestions.score', "Cosine similarity of the label's prompt and the product's best photo for it."],
    ['COLUMN tag_suggestions.model_id', 'The embedding model whose vectors classified the product.'],
    ['COLUMN tag_suggestions.job_id', 'The tagging run (reindex_jobs row of kind tag) that wrote the suggestion.'],
    ['COLUMN tag_suggestions.created_at', 'When the suggestion was written.'],
    [
      'TABLE tag_acceptances',
      'One row per acceptSuggestions call: which attribute, above which probability, how many products it filled and how many it left because the merchant had set them.',
    ],
    ['COLUMN tag_acceptances.id', 'Acceptance id.'],
    ['COLUMN tag_acceptances.attribute', 'The attribute accepted.'],
    [
      'COLUMN tag_acceptances.target',
      "Where the labels went: 'category' (products.category) or 'attributes' (a key of products.attributes).",
    ],
    ['COLUMN tag_acceptances.min_probability', 'Only rank-1 suggestions at least this probable were accepted.'],
    ['COLUMN tag_acceptances.accepted', 'Products whose attribute this acceptance filled.'],
    ['COLUMN tag_acceptances.skipped', 'Products with a qualifying suggestion left unchanged because the merchant had set the attribute.'],
    ['COLUMN tag_acceptances.accepted_at', 'When.'],
    ['TABLE tag_acceptance_items', 'What an acceptance wrote: one row per product filled, with the label and its probability.'],
    ['COLUMN tag_acceptance_items.acceptance_id', 'The acceptance.'],
    ['COLUMN tag_acceptance_items.product_id', 'The product filled.'],
    ['COLUMN tag_acceptance_items.label', 'The label written.'],
    ['COLUMN tag_acceptance_items.probability', "The suggestion's probability."],
    ['COLUMN tag_acceptance_items.model_id', 'The model that suggested it.'],
    ['TABLE duplicate_scans', 'The last near-duplicate scan per model: its threshold, its k-NN bound, what it found and how long it took.'],
    ['COLUMN duplicate_scans.model_id', 'The model whose vectors were compared.'],
    ['COLUMN duplicate_scans.threshold', 'Products are near-duplicates when two of their photos have at least this cosine similarity.'],
    ['COLUMN duplicate_scans.neighbours', "How many nearest photos of each photo the scan read from the model's HNSW index."],
    ['COLUMN duplicate_scans.products', 'Products scanned (those with a vector of the model).'],
    ['COLUMN duplicate_scans.pairs', 'Pairs found (duplicate_pairs).'],
    ['COLUMN duplicate_scans.groups', 'Groups of two or more products (duplicate_groups).'],
    ['COLUMN duplicate_scans.duration_ms', 'How long the scan took.'],
    ['COLUMN duplicate_scans.scanned_at', 'When the scan finished. Products written since are not in its pairs or groups.'],
    ['TABLE duplicate_pairs', 'Pairs of products with near-identical photos found by the last scan of a model; product_a < product_b.'],
    ['COLUMN duplicate_pairs.model_id', 'The model.'],
    ['COLUMN duplicate_pairs.product_a', 'The pair’s lower product id.'],
    ['COLUMN duplicate_pairs.product_b', 'The pair’s higher product id.'],
    ['COLUMN duplicate_pairs.score', 'The best cosine similarity between a photo of one and a photo of the other.'],
    [
      'TABLE duplicate_groups',
      'Groups of near-duplicate products (the connected pairs of the last scan); only products in a group of two or more have a row. similarProducts(collapseDuplicates: true) keeps one product per group.',
    ],
    ['COLUMN duplicate_groups.model_id', 'The model.'],
    ['COLUMN duplicate_groups.product_id', 'A product of the group.'],
    ['COLUMN duplicate_groups.group_id', 'The group: the lowest product id in it.'],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }

  // Readable by the analysts' role (migration 0003), where it exists.
  await sql`
    DO $do$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vps_analyst') THEN
        GRANT SELECT ON tag_suggestions, tag_acceptances, tag_acceptance_items, duplicate_scans, duplicate_pairs, duplicate_groups TO vps_analyst;
      END IF;
    END
    $do$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['duplicate_groups', 'duplicate_pairs', 'duplicate_scans', 'tag_acceptance_items', 'tag_acceptances', 'tag_suggestions'])
    await sql`DROP TABLE ${sql.raw(t)}`.execute(db);
  await sql`DELETE FROM reindex_jobs WHERE kind <> 'reindex'`.execute(db);
  await sql`DROP INDEX reindex_jobs_one_open_tagging_per_attribute`.execute(db);
  await sql`DROP INDEX reindex_jobs_one_open_per_model`.execute(db);
  await sql`CREATE UNIQUE INDEX reindex_jobs_one_open_per_model ON reindex_jobs (model_id) WHERE ${OPEN}`.execute(db);
  await sql`ALTER TABLE reindex_jobs DROP COLUMN taxonomy, DROP COLUMN kind`.execute(db);
}
