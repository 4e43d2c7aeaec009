/**
 * Zero-shot tagging's SQL (migration 0011): the products a tagging run walks (keyset on products.id) with
 * their photos' stored vectors, its suggestions, and their acceptance into the product.
 *
 * "Missing" is one rule for the run's onlyMissing and for acceptance, so that an acceptance fills exactly
 * what a run for missing values looked at: an attribute key is missing when it is absent, JSON null or the
 * empty string; the category (required by ingest) is missing when it is the placeholder UNCATEGORIZED.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Db } from './types.js';

/** The category a merchant gives a product whose category it does not know (ingest requires one). */
export const UNCATEGORIZED = 'uncategorized';
/** How many of a product's most probable labels a run stores per attribute. */
export const SUGGESTIONS_PER_PRODUCT = 3;

/** Where an attribute's accepted labels go: products.category, or a key of products.attributes. */
export const targetOf = (attribute: string): 'category' | 'attributes' => (attribute === 'category' ? 'category' : 'attributes');

/** True for a product (alias p) whose attribute is missing (see the file comment). */
function missing(attribute: string): RawBuilder<boolean> {
  return targetOf(attribute) === 'category'
    ? sql<boolean>`lower(p.category) = ${UNCATEGORIZED}`
    : sql<boolean>`coalesce(p.attributes ->> ${attribute}, '') = ''`;
}

export interface TagBatchProduct {
  productId: string;
  sku: string;
  /** The product's whole-photo vectors for the model (none: no vector, the run records it). */
  vectors: Float32Array[];
}

/** The next products after the cursor (all, or those missing the attribute), with their photos' vectors. */
export async function nextTagBatch(
  db: Db,
  o: { modelId: string; attribute: string; onlyMissing: boolean; afterId: string; limit: number },
): Promise<TagBatchProduct[]> {
  const rows = await sql<{ id: string; sku: string; v: string | null }>`
    SELECT p.id, p.sku, e.embedding::vector::text AS v
    FROM (SELECT p.id, p.sku FROM products p
          WHERE p.id > ${o.afterId} ${o.onlyMissing ? sql`AND ${missing(o.attribute)}` : sql``}
          ORDER BY p.id LIMIT ${o.limit}) p
    LEFT JOIN product_embeddings e ON e.product_id = p.id AND e.model_id = ${o.modelId} AND e.region = 0
    ORDER BY p.id`.execute(db);
  const out: TagBatchProduct[] = [];
  for (const r of rows.rows) {
    const id = String(r.id);
    let last = out.at(-1);
    if (last?.productId !== id) out.push((last = { productId: id, sku: r.sku, vectors: [] }));
    if (r.v) last.vectors.push(Float32Array.from(JSON.parse(r.v) as number[]));
  }
  return out;
}

/** Products a run has left after the cursor. */
export async function countTagLeft(db: Db, o: { attribute: string; onlyMissing: boolean; afterId: string }): Promise<number> {
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM products p
    WHERE p.id > ${o.afterId} ${o.onlyMissing ? sql`AND ${missing(o.attribute)}` : sql``}`.execute(db);
  return Number(r.rows[0]!.n);
}

export interface Suggestion {
  productId: string;
  rank: number;
  label: string;
  probability: number;
  score: number;
}

/**
 * A batch's suggestions for an attribute: the products' earlier suggestions for it are replaced (a batch
 * re-done after a crash writes the same rows again, never twice).
 */
export async function replaceSuggestions(
  db: Db,
  o: { attribute: string; modelId: string; jobId: string; productIds: string[]; suggestions: Suggestion[] },
): Promise<void> {
  if (o.productIds.length === 0) return;
  await sql`DELETE FROM tag_suggestions WHERE attribute = ${o.attribute} AND product_id = ANY(${o.productIds}::bigint[])`.execute(db);
  if (o.suggestions.length === 0) return;
  const s = o.suggestions;
  await sql`
    INSERT INTO tag_suggestions (product_id, attribute, rank, label, probability, score, model_id, job_id)
    SELECT u.product_id, ${o.attribute}, u.rank, u.label, u.probability, u.score, ${o.modelId}, ${o.jobId}
    FROM unnest(${s.map((x) => x.productId)}::bigint[], ${s.map((x) => x.rank)}::smallint[], ${s.map((x) => x.label)}::text[],
                ${s.map((x) => x.probability)}::float8[], ${s.map((x) => x.score)}::float8[])
      AS u(product_id, rank, label, probability, score)
    JOIN products p ON p.id = u.product_id`.execute(db);
}

export interface StoredSuggestion extends Suggestion {
  attribute: string;
  modelId: string;
  jobId: string | null;
  createdAt: Date;
}

/** Stored suggestions, most probable first (an attribute's, optionally one product's). */
export async function listSuggestions(
  db: Db,
  o: { attribute: string; productId?: string | null; minProbability?: number | null; limit: number },
): Promise<StoredSuggestion[]> {
  let q = db.selectFrom('tag_suggestions').selectAll().where('attribute', '=', o.attribute);
  if (o.productId) q = q.where('product_id', '=', o.productId);
  else q = q.where('rank', '=', 1);
  if (o.minProbability != null) q = q.where('probability', '>=', o.minProbability);
  const rows = await q.orderBy('probability', 'desc').orderBy('product_id').orderBy('rank').limit(o.limit).execute();
  return rows.map((r) => ({
    productId: String(r.product_id),
    attribute: r.attribute,
    rank: r.rank,
    label: r.label,
    probability: r.probability,
    score: r.score,
    modelId: r.model_id,
    jobId: r.job_id == null ? null : String(r.job_id),
    createdAt: new Date(r.created_at),
  }));
}

export interface Acceptance {
  id: string;
  attribute: string;
  target: 'category' | 'attributes';
  minProbability: number;
  /** Products whose attribute was filled. */
  accepted: number;
  /** Products with a qualifying suggestion whose attribute was already set (by the merchant, or earlier): left as they were. */
  skipped: number;
  acceptedAt: Date;
}

/**
 * Copies each product's most probable label (rank 1) at or above minProbability into the product, only
 * where the attribute is missing, and records the acceptance and every product it filled, in the caller's
 * transaction (one per acceptance). A product written meanwhile is re-checked under its row lock by the
 * UPDATE's WHERE, so a merchant's value set concurrently is never overwritten.
 */
export async function acceptSuggestions(db: Db, o: { attribute: string; minProbability: number }): Promise<Acceptance> {
  const target = targetOf(o.attribute);
  const head = await db
    .insertInto('tag_acceptances')
    .values({ attribute: o.attribute, target, min_probability: o.minProbability, accepted: 0, skipped: 0 })
    .returning(['id', 'accepted_at'])
    .executeTakeFirstOrThrow();
  const set =
    target === 'category' ? sql`category = c.label` : sql`attributes = p.attributes || jsonb_build_object(${o.attribute}::text, c.label)`;
  const r = await sql<{ accepted: string; qualifying: string }>`
    WITH c AS (
      SELECT s.product_id, s.label, s.probability, s.model_id FROM tag_suggestions s
      WHERE s.attribute = ${o.attribute} AND s.rank = 1 AND s.probability >= ${o.minProbability}
    ), filled AS (
      UPDATE products p SET ${set}, updated_at = now()
      FROM c WHERE p.id = c.product_id AND ${missing(o.attribute)}
      RETURNING p.id, c.label, c.probability, c.model_id
    ), items AS (
      INSERT INTO tag_acceptance_items (acceptance_id, product_id, label, probability, model_id)
      SELECT ${head.id}, id, label, probability, model_id FROM filled
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM items) AS accepted, (SELECT count(*) FROM c) AS qualifying`.execute(db);
  const accepted = Number(r.rows[0]!.accepted);
  const skipped = Number(r.rows[0]!.qualifying) - accepted;
  await db.updateTable('tag_acceptances').set({ accepted, skipped }).where('id', '=', head.id).execute();
  return {
    id: String(head.id),
    attribute: o.attribute,
    target,
    minProbability: o.minProbability,
    accepted,
    skipped,
    acceptedAt: new Date(head.accepted_at),
  };
}
