/**
 * Near-duplicate products (migration 0011): products two of whose whole photos have a cosine similarity at
 * or above a threshold. The scan reads, for each photo, its `neighbours` nearest photos of other products
 * from the model's HNSW index (a k-NN self-join bounded per photo: O(n · log n), not the O(n²) of all
 * pairs), keeps the pairs at or above the threshold, connects them into groups, and replaces the model's
 * previous scan in one transaction. Only whole photos (region 0) take part: two products sharing a logo
 * crop are not duplicates.
 *
 * The bound is what makes it a k-NN join: a group larger than neighbours + 1 products is still found
 * whole as long as its members are chained by their nearest neighbours (connected components), but a
 * pair ranked past `neighbours` for both of its photos is missed.
 */
import { sql, type Kysely } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import { MODEL_ID } from '../hub/ids.js';
import type { DB, Db } from './types.js';

/**
 * The default threshold: the cosine at or above which two products' photos count as the same photo. Chosen
 * with bench/catalog/duplicates.ts (perturbed copies of generated photos: resized, recompressed, cropped a
 * little, through the generated tiny model): the highest candidate that still keeps about 99 % of the
 * copies, where the next lower one starts taking distinct photos for duplicates. A real checkpoint's
 * cosines are spread differently: measure it with the bench's --model-dir and pass threshold.
 */
export const DEFAULT_DUPLICATE_THRESHOLD = 0.92;
export const DEFAULT_NEIGHBOURS = 10;
export const MAX_NEIGHBOURS = 100;
/** Photos per k-NN statement. */
const SCAN_BATCH = 256;

export interface DuplicateScan {
  modelId: string;
  threshold: number;
  neighbours: number;
  products: number;
  pairs: number;
  groups: number;
  durationMs: number;
  scannedAt: Date;
}

export interface DuplicatePair {
  a: string;
  b: string;
  score: number;
}

/** Groups of connected pairs, each as its sorted members; a group's id is its lowest product id. */
export function groupPairs(pairs: readonly DuplicatePair[]): Map<string, string[]> {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== r) r = parent.get(r)!;
    let y = x;
    while (parent.get(y) !== r) {
      const next = parent.get(y)!;
      parent.set(y, r);
      y = next;
    }
    return r;
  };
  const lower = (x: string, y: string) => (BigInt(x) < BigInt(y) ? x : y);
  for (const p of pairs) {
    if (!parent.has(p.a)) parent.set(p.a, p.a);
    if (!parent.has(p.b)) parent.set(p.b, p.b);
    const ra = find(p.a);
    const rb = find(p.b);
    if (ra !== rb) {
      const root = lower(ra, rb);
      parent.set(ra, root);
      parent.set(rb, root);
    }
  }
  const groups = new Map<string, string[]>();
  for (const id of parent.keys()) {
    const root = find(id);
    groups.set(root, [...(groups.get(root) ?? []), id]);
  }
  for (const members of groups.values()) members.sort((x, y) => (BigInt(x) < BigInt(y) ? -1 : 1));
  return groups;
}

/**
 * The k-NN self-join of one batch of query photos (image ids in (afterId, lastId]): each photo's nearest
 * photos of other products through the model's partial HNSW index (its expression and the model id as
 * literals, so the planner matches the index), the pairs at or above the threshold, each pair's best score.
 * Run with the HNSW settings of knnSettings in the same transaction.
 */
export function duplicatePairsStatement(
  model: { id: string; dimension: number },
  o: { afterId: string; lastId: string; threshold: number; neighbours: number },
) {
  const dim = sql.raw(String(model.dimension));
  const id = sql.lit(model.id);
  return sql<{ a: string; b: string; score: number }>`
    SELECT least(q.product_id, n.product_id) AS a, greatest(q.product_id, n.product_id) AS b, max(1 - n.distance) AS score
    FROM product_embeddings q
    CROSS JOIN LATERAL (
      SELECT e.product_id, (e.embedding::halfvec(${dim}) <=> q.embedding::halfvec(${dim}))::float8 AS distance
      FROM product_embeddings e
      WHERE e.model_id = ${id} AND e.region = 0 AND e.product_id <> q.product_id
      ORDER BY e.embedding::halfvec(${dim}) <=> q.embedding::halfvec(${dim})
      LIMIT ${o.neighbours}
    ) n
    WHERE q.model_id = ${id} AND q.region = 0 AND q.image_id > ${o.afterId} AND q.image_id <= ${o.lastId}
      AND 1 - n.distance >= ${o.threshold}
    GROUP BY 1, 2`;
}

/** ef_search ≥ neighbours; the iterative scan walks on past the query product's own photos. Transaction-local. */
export function knnSettings(neighbours: number) {
  return sql`SELECT set_config('hnsw.ef_search', ${String(Math.max(40, 2 * neighbours))}, true),
                    set_config('hnsw.iterative_scan', 'relaxed_order', true)`;
}

/** One batch of photos' pairs: each photo's nearest photos of other products, those at or above the threshold. */
async function pairsOfBatch(
  db: Kysely<DB>,
  model: { id: string; dimension: number },
  o: { afterId: string; threshold: number; neighbours: number },
): Promise<{ pairs: DuplicatePair[]; last: string | null; photos: number }> {
  return db.transaction().execute(async (trx) => {
    await knnSettings(o.neighbours).execute(trx);
    const batch = await sql<{ id: string }>`
      SELECT e.image_id AS id FROM product_embeddings e
      WHERE e.model_id = ${model.id} AND e.region = 0 AND e.image_id > ${o.afterId}
      ORDER BY e.image_id LIMIT ${SCAN_BATCH}`.execute(trx);
    if (batch.rows.length === 0) return { pairs: [], last: null, photos: 0 };
    const last = String(batch.rows.at(-1)!.id);
    const rows = await duplicatePairsStatement(model, { ...o, lastId: last }).execute(trx);
    return {
      pairs: rows.rows.map((r) => ({ a: String(r.a), b: String(r.b), score: Number(r.score) })),
      last,
      photos: batch.rows.length,
    };
  });
}

/**
 * Scans a model's photos for near-duplicate products and replaces its stored scan. Photos without a
 * stored image (image_id NULL, migration 0010's leftovers) are not scanned as queries but are found as
 * neighbours.
 */
export async function scanDuplicates(
  db: Kysely<DB>,
  model: { id: string; dimension: number },
  o: { threshold?: number | null; neighbours?: number | null; onProgress?: (photos: number, total: number) => void } = {},
): Promise<DuplicateScan> {
  const threshold = o.threshold ?? DEFAULT_DUPLICATE_THRESHOLD;
  const neighbours = o.neighbours ?? DEFAULT_NEIGHBOURS;
  if (!(threshold > 0 && threshold <= 1))
    throw new AppError(ErrorCode.BAD_USER_INPUT, 'threshold must be in (0, 1]', { field: 'threshold' });
  if (!Number.isInteger(neighbours) || neighbours < 1 || neighbours > MAX_NEIGHBOURS)
    throw new AppError(ErrorCode.BAD_USER_INPUT, `neighbours must be between 1 and ${MAX_NEIGHBOURS}`, { field: 'neighbours' });
  if (!MODEL_ID.test(model.id) || !Number.isInteger(model.dimension)) throw new Error('invalid model');
  const started = Date.now();
  const counts = await sql<{ photos: string; products: string }>`
    SELECT count(*) AS photos, count(DISTINCT product_id) AS products FROM product_embeddings
    WHERE model_id = ${model.id} AND region = 0`.execute(db);
  const totalPhotos = Number(counts.rows[0]!.photos);
  const byPair = new Map<string, DuplicatePair>();
  let after = '0';
  let done = 0;
  for (;;) {
    const b = await pairsOfBatch(db, model, { afterId: after, threshold, neighbours });
    if (b.last === null) break;
    for (const p of b.pairs) {
      const key = `${p.a}:${p.b}`;
      const prev = byPair.get(key);
      if (!prev || p.score > prev.score) byPair.set(key, p);
    }
    after = b.last;
    done += b.photos;
    o.onProgress?.(done, totalPhotos);
  }
  const pairs = [...byPair.values()];
  const groups = groupPairs(pairs);
  const scan: DuplicateScan = {
    modelId: model.id,
    threshold,
    neighbours,
    products: Number(counts.rows[0]!.products),
    pairs: pairs.length,
    groups: groups.size,
    durationMs: Date.now() - started,
    scannedAt: new Date(),
  };
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('duplicate_scans').where('model_id', '=', model.id).execute();
    await trx
      .insertInto('duplicate_scans')
      .values({
        model_id: model.id,
        threshold,
        neighbours,
        products: scan.products,
        pairs: scan.pairs,
        groups: scan.groups,
        duration_ms: scan.durationMs,
        scanned_at: scan.scannedAt,
      })
      .execute();
    // Products deleted since their pair was found are left out (the JOIN), not an error.
    if (pairs.length)
      await sql`
        INSERT INTO duplicate_pairs (model_id, product_a, product_b, score)
        SELECT ${model.id}, u.a, u.b, u.score
        FROM unnest(${pairs.map((p) => p.a)}::bigint[], ${pairs.map((p) => p.b)}::bigint[], ${pairs.map((p) => p.score)}::float8[]) AS u(a, b, score)
        WHERE EXISTS (SELECT 1 FROM products WHERE id = u.a) AND EXISTS (SELECT 1 FROM products WHERE id = u.b)`.execute(trx);
    const members = [...groups.entries()].flatMap(([g, ids]) => ids.map((p) => [p, g] as const));
    if (members.length)
      await sql`
        INSERT INTO duplicate_groups (model_id, product_id, group_id)
        SELECT ${model.id}, u.p, u.g FROM unnest(${members.map((m) => m[0])}::bigint[], ${members.map((m) => m[1])}::bigint[]) AS u(p, g)
        WHERE EXISTS (SELECT 1 FROM products WHERE id = u.p)`.execute(trx);
  });
  return scan;
}

export async function getDuplicateScan(db: Db, modelId: string): Promise<DuplicateScan | null> {
  const r = await db.selectFrom('duplicate_scans').selectAll().where('model_id', '=', modelId).executeTakeFirst();
  if (!r) return null;
  return {
    modelId: r.model_id,
    threshold: r.threshold,
    neighbours: r.neighbours,
    products: r.products,
    pairs: r.pairs,
    groups: r.groups,
    durationMs: r.duration_ms,
    scannedAt: new Date(r.scanned_at),
  };
}

export interface DuplicateGroup {
  id: string;
  productIds: string[];
  pairs: DuplicatePair[];
  maxScore: number;
}

/** A page of a model's stored groups, by group id (keyset: after is the previous page's last group id). */
export async function listDuplicateGroups(
  db: Db,
  o: { modelId: string; afterGroup: string; first: number },
): Promise<{ groups: DuplicateGroup[]; hasMore: boolean }> {
  const heads = await sql<{ group_id: string; ids: string[] }>`
    SELECT group_id, array_agg(product_id ORDER BY product_id)::text[] AS ids FROM duplicate_groups
    WHERE model_id = ${o.modelId} AND group_id > ${o.afterGroup}
    GROUP BY group_id ORDER BY group_id LIMIT ${o.first + 1}`.execute(db);
  const page = heads.rows.slice(0, o.first);
  if (page.length === 0) return { groups: [], hasMore: false };
  const pairs = await sql<{ group_id: string; a: string; b: string; score: number }>`
    SELECT g.group_id, p.product_a AS a, p.product_b AS b, p.score
    FROM duplicate_pairs p JOIN duplicate_groups g ON g.model_id = p.model_id AND g.product_id = p.product_a
    WHERE p.model_id = ${o.modelId} AND g.group_id = ANY(${page.map((h) => String(h.group_id))}::bigint[])
    ORDER BY p.score DESC, p.product_a, p.product_b`.execute(db);
  const byGroup = new Map<string, DuplicatePair[]>();
  for (const r of pairs.rows) {
    const g = String(r.group_id);
    byGroup.set(g, [...(byGroup.get(g) ?? []), { a: String(r.a), b: String(r.b), score: Number(r.score) }]);
  }
  return {
    groups: page.map((h) => {
      const id = String(h.group_id);
      const ps = byGroup.get(id) ?? [];
      return { id, productIds: h.ids.map(String), pairs: ps, maxScore: ps[0]?.score ?? 0 };
    }),
    hasMore: heads.rows.length > o.first,
  };
}

/** The duplicate group of each given product that is in one (products in none are absent). */
export async function duplicateGroupsOf(db: Db, modelId: string, productIds: readonly string[]): Promise<Map<string, string>> {
  if (productIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('duplicate_groups')
    .select(['product_id', 'group_id'])
    .where('model_id', '=', modelId)
    .where('product_id', 'in', [...productIds])
    .execute();
  return new Map(rows.map((r) => [String(r.product_id), String(r.group_id)]));
}

/** How many products more than one per group the model's groups hold: the most a collapse can remove. */
export async function collapsibleProducts(db: Db, modelId: string): Promise<number> {
  const r = await sql<{ n: string }>`
    SELECT count(*) - count(DISTINCT group_id) AS n FROM duplicate_groups WHERE model_id = ${modelId}`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}
