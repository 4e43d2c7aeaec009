/** What resolvers hand to the field resolvers below them (codegen mappers type the parents with these). */
import type { Product } from '../db/products.js';
import type { ReindexJob } from '../schema/generated.js';

/** A reindex job as read from its row; its coverage is counted only when a client asks for it. */
export type ReindexJobParent = Omit<ReindexJob, 'coverage'>;

export interface ProductConnectionParent {
  edges: Array<{ cursor: string; node: Product }>;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  /** Counted only when a client asks for totalCount. */
  totalCount: () => Promise<number>;
}
