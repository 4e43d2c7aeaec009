/**
 * Retrieval figures from the rank at which each query found its product (1-based; null: not in the top
 * k). recall@n: the share of queries whose product is among the first n. MRR: the mean of 1/rank, a
 * query whose product is not in the top k counting 0 (MRR@k, k = the depth searched, 10 by default).
 */

export const RECALL_AT = [1, 5, 10] as const;

export interface Metrics {
  queries: number;
  recallAt1: number;
  recallAt5: number;
  recallAt10: number;
  mrr: number;
}

export function metricsOf(ranks: ReadonlyArray<number | null>): Metrics {
  const n = ranks.length;
  const within = (k: number) => (n === 0 ? 0 : ranks.filter((r) => r != null && r <= k).length / n);
  const mrr = n === 0 ? 0 : ranks.reduce<number>((s, r) => s + (r == null ? 0 : 1 / r), 0) / n;
  return { queries: n, recallAt1: within(1), recallAt5: within(5), recallAt10: within(10), mrr };
}

/** Metrics per key (e.g. per category), keys sorted. */
export function metricsBy<T>(
  items: readonly T[],
  key: (t: T) => string,
  rank: (t: T) => number | null,
): Array<{ key: string; metrics: Metrics }> {
  const groups = new Map<string, Array<number | null>>();
  for (const it of items) {
    const k = key(it);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(rank(it));
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, ranks]) => ({ key: k, metrics: metricsOf(ranks) }));
}
