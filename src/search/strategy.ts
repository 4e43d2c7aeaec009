/**
 * How a similarity query is executed, chosen per query from how many vectors the planner expects to
 * pass its filters:
 *
 * - exact: when fewer than `exactThreshold(k)` are expected, read them all through the B-tree
 *   filters and sort by distance. Always exact, and cheap precisely because the filter is selective.
 * - hnsw: otherwise, walk the model's HNSW index with pgvector 0.8's iterative scan, so filtered-out
 *   neighbours do not shortchange the result; ef_search and max_scan_tuples grow with k. The
 *   matching set is then expected to hold ≥ 100·k rows, so the walk finds k matches after visiting
 *   about k / selectivity tuples, well inside the scan budget. Should it still come back short (a
 *   misestimate, or fewer than k matches), the query is repeated exactly: filters never shortchange.
 */
export type Strategy = 'exact' | 'hnsw';

export const MAX_K = 1000;

/**
 * Below this many matching vectors an exact scan is both exact and fast. Measured at 100k rows
 * (BENCHMARKS.md): an exact scan costs ~4 µs per matching row (10 000 rows: 40 ms), an iterative HNSW
 * walk for k = 10 a few ms while at least ~1% of rows match; 2 000 is about where they cross.
 */
export function exactThreshold(k: number): number {
  return Math.min(200_000, Math.max(2_000, 100 * k));
}

export function chooseStrategy(matching: number, k: number): Strategy {
  return matching < exactThreshold(k) ? 'exact' : 'hnsw';
}

/**
 * HNSW settings for one query (SET LOCAL inside its transaction). walkLimit: how many vectors the walk
 * must return (k products' worth, migration 0010: more than k when products have several photos); the
 * scan budget grows with it, the candidate list stays sized for k.
 */
export function hnswSettings(k: number, walkLimit = k): { efSearch: number; maxScanTuples: number } {
  return {
    // pgvector's default (40) for k ≤ 10: measured at 100k rows, recall@10 0.994 against 0.995 at 100,
    // 0.3–0.5 ms sooner (the walk is most of an unfiltered query); the iterative scan extends it when
    // filters remove neighbours, so the candidate list need not be sized for them.
    efSearch: Math.min(1000, Math.max(40, 4 * k)),
    // Enough to pass over filtered-out rows down to a selectivity of k / exactThreshold(k).
    maxScanTuples: Math.max(40_000, 4 * exactThreshold(k)) * Math.max(1, Math.ceil(walkLimit / k)),
  };
}
