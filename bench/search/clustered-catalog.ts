/**
 * The catalog bench/search/search.ts loads (one 768-d vector per product, clustered, low intrinsic
 * dimension) and the category filters it is queried with. One home, because bench/search/baseline.ts
 * queries a cluster that search.ts loaded and must ask it the same questions.
 */
import { embeddingLikeSpace } from '../../test/support/vectors.js';

export const dim = 768;
export const model = { id: 'bench/clustered-768', dimension: dim };
export const space = embeddingLikeSpace({ dimension: dim, seed: 11, clusters: 256 });

/** Product i's category: c10 holds 10 % of the products, c1 1 %, c0.1 0.1 %, c0.01 0.01 %. */
export const categoryOf = (i: number) =>
  i % 10_000 === 7 ? 'c0.01' : i % 1000 === 5 ? 'c0.1' : i % 100 === 3 ? 'c1' : i % 10 === 1 ? 'c10' : 'common';

export const selectivities = [
  { label: '100%', filter: null },
  { label: '10%', filter: { category: 'c10' } },
  { label: '1%', filter: { category: 'c1' } },
  { label: '0.1%', filter: { category: 'c0.1' } },
  { label: '0.01%', filter: { category: 'c0.01' } },
];
