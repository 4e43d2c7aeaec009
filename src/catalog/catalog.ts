/** Catalog operations: validated input in, products out. Knows the database, not GraphQL. */
import type { Kysely } from 'kysely';
import type { DB } from '../db/types.js';
import { countProducts, deleteProductRow, getProduct, listProducts, type Product, type ProductFilter } from '../db/products.js';
import { isProductId, validateFilter, validateId, validatePageSize } from './validate.js';

export async function findProduct(db: Kysely<DB>, id: string): Promise<Product | null> {
  // An id that could never exist is simply not found (the ID type is opaque to clients).
  if (!isProductId(id)) return null;
  return getProduct(db, id);
}

/** One page in id order after `afterId` (the resolvers own the cursor that carries it). */
export async function pageProducts(
  db: Kysely<DB>,
  args: { filter?: ProductFilter | null; first?: number | null; afterId?: string | null },
) {
  const filter = validateFilter(args.filter);
  const first = validatePageSize(args.first);
  const afterId = args.afterId ?? null;
  const page = await listProducts(db, { filter, first, afterId });
  return { ...page, totalCount: () => countProducts(db, filter) };
}

export async function deleteProduct(db: Kysely<DB>, id: string): Promise<boolean> {
  return deleteProductRow(db, validateId('id', id));
}
