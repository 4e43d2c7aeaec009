/**
 * Queries made of several vectors: a composed query's weighted terms ("like this photo, but red, not
 * leather") and recommendations from example products ("more like these, not like that").
 *
 * A composed query is the weighted sum of its terms' unit vectors, normalised: q = Σ wᵢ·uᵢ / ‖Σ wᵢ·uᵢ‖.
 * The cosine of q with a product vector p is then Σ wᵢ·cos(uᵢ, p) / ‖Σ wᵢ·uᵢ‖: the weighted sum of the
 * terms' own cosines, scaled by one constant per query, so one nearest-neighbour walk over q ranks by the
 * weighted sum of similarities exactly (the constant changes no order), with the index and filters of any
 * single-vector query. Every SigLIP vector is already L2-normalised, so "unit vectors" costs nothing, and a
 * text's vector does not outweigh a photo's because of its length. docs/ARCHITECTURE.md ("Composed
 * queries") says why not the alternatives (raw sums, one walk per term fused by rank).
 *
 * Recommendations follow Qdrant's two strategies (its recommend API): AVERAGE_VECTOR walks once for
 * avg(positive) + (avg(positive) − avg(negative)); BEST_SCORE scores each candidate by its best cosine to a
 * positive, or −(best cosine to a negative)² where a negative is closer than every positive.
 */
import { badInput } from '../errors.js';

/** A composed query's terms: each one that needs an embedding is a text or a photo embedded per query. */
export const MAX_QUERY_TERMS = 8;
/** Only the weights' ratios matter; a bound keeps them readable and their sum finite. */
export const MAX_TERM_WEIGHT = 100;
/** Example products of a recommendation, each side. */
export const MAX_EXAMPLES = 16;
/**
 * Below this length (relative to Σ|w|) the weighted sum is the terms cancelling out, not a direction:
 * "red" with weight 1 and "red" with weight −1; its direction would be rounding noise.
 */
export const MIN_COMPOSED_NORM = 1e-4;

/** Why a composed query or a recommendation was refused (details.reason, with BAD_USER_INPUT). */
export type CompositionRefusal = 'EMPTY_TERMS' | 'TOO_MANY_TERMS' | 'ZERO_WEIGHTS' | 'ZERO_VECTOR' | 'TOO_MANY_EXAMPLES';

export const refuse = (reason: CompositionRefusal, message: string, details: Record<string, unknown> = {}) =>
  badInput(message, { field: 'query.terms', reason, ...details });

/** The weights checked (finite, bounded, not all 0): the terms of weight 0 are dropped before anything runs. */
export function checkWeights(weights: readonly number[]): void {
  if (weights.length === 0) throw refuse('EMPTY_TERMS', 'query.terms must hold at least one term');
  if (weights.length > MAX_QUERY_TERMS)
    throw refuse('TOO_MANY_TERMS', `query.terms holds ${weights.length} terms; at most ${MAX_QUERY_TERMS}`, { max: MAX_QUERY_TERMS });
  weights.forEach((w, index) => {
    if (!Number.isFinite(w) || Math.abs(w) > MAX_TERM_WEIGHT)
      throw badInput(`query.terms[${index}].weight must be between -${MAX_TERM_WEIGHT} and ${MAX_TERM_WEIGHT}`, {
        field: `query.terms[${index}].weight`,
        max: MAX_TERM_WEIGHT,
      });
  });
  if (weights.every((w) => w === 0)) throw refuse('ZERO_WEIGHTS', 'every term of query.terms has weight 0: the query has no direction');
}

/** The weighted sum of unit vectors, normalised; refused (ZERO_VECTOR) where the terms cancel out. */
export function combineUnitVectors(vectors: readonly Float32Array[], weights: readonly number[]): Float32Array {
  const dim = vectors[0]!.length;
  const sum = new Float64Array(dim);
  let totalWeight = 0;
  vectors.forEach((v, t) => {
    if (v.length !== dim) throw new Error(`term ${t} has ${v.length} dimensions, not ${dim}`);
    // Each term's own length is divided out, so a vector stored at half precision still counts as its weight.
    const scale = weights[t]! / norm(v);
    for (let i = 0; i < dim; i++) sum[i]! += scale * v[i]!;
    totalWeight += Math.abs(weights[t]!);
  });
  const length = Math.hypot(...sum);
  if (!(length > MIN_COMPOSED_NORM * totalWeight))
    throw refuse('ZERO_VECTOR', 'the terms of query.terms cancel out (their weighted sum is the zero vector): the query has no direction');
  return Float32Array.from(sum, (x) => x / length);
}

function norm(v: Float32Array): number {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s) || 1;
}

/**
 * AVERAGE_VECTOR's query: avg(positive) + (avg(positive) − avg(negative)) as Qdrant computes it (just
 * avg(positive) without negatives), each example a unit vector; normalised, refused where it cancels out.
 */
export function averageVectorQuery(positive: readonly Float32Array[], negative: readonly Float32Array[]): Float32Array {
  const p = 1 / positive.length;
  if (!negative.length)
    return combineUnitVectors(
      positive,
      positive.map(() => p),
    );
  const n = 1 / negative.length;
  return combineUnitVectors([...positive, ...negative], [...positive.map(() => 2 * p), ...negative.map(() => -n)]);
}

/**
 * BEST_SCORE's score of one candidate from its cosines to the positives and to the negatives (Qdrant's
 * definition): the best positive cosine, unless a negative is strictly closer; then −(best negative)²,
 * which is ≤ 0: such a candidate ranks after every one whose best positive cosine is ≥ 0 (SigLIP's
 * image–image cosines nearly always are), the closer to a negative the lower.
 */
export function bestScore(positiveCosines: readonly number[], negativeCosines: readonly number[]): number {
  const pos = Math.max(...positiveCosines);
  const neg = negativeCosines.length ? Math.max(...negativeCosines) : -Infinity;
  return neg > pos ? -(neg * neg) : pos;
}

/** A pgvector text literal '[…]' (a stored vector, a cached text vector) as numbers. */
export function parseVector(literal: string): Float32Array {
  return Float32Array.from(JSON.parse(literal) as number[]);
}
