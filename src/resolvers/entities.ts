/**
 * Product as a federation entity (src/schema/federation.graphql): a gateway resolves references by `id`
 * or by `sku`. A gateway sends all references of one query plan step in one `_entities` call, and
 * @apollo/subgraph calls __resolveReference once per reference; a per-request DataLoader gathers those
 * calls into one statement (db/products.ts getProductsByKeys) that waits in the `query` admission gate
 * like the search statements do, so a supergraph's fan-out costs one query slot, not one per product.
 */
import DataLoader from 'dataloader';
import { isProductId } from '../catalog/validate.js';
import { getProductsByKeys, type Product } from '../db/products.js';
import { untilAborted } from '../admission/index.js';
import { badInput } from '../errors.js';
import type { Resolvers } from '../schema/generated.js';
import type { RequestContext } from './context.js';
import { perRequest } from './loaders.js';

/** A key of a reference: `id:42` or `sku:TEE-1` (DataLoader keys are compared as strings). */
type ReferenceKey = `id:${string}` | `sku:${string}`;

/** The request's loader: one per request, so nothing is cached across requests (or callers). */
const productLoader = perRequest(
  (ctx: RequestContext) =>
    new DataLoader<ReferenceKey, Product | null>(async (keys) => {
      const ids = new Set<string>();
      const skus = new Set<string>();
      for (const key of keys) {
        if (key.startsWith('id:')) {
          const id = key.slice(3);
          // An id that could never exist is simply not found, as for Query.product (the ID type is opaque).
          if (isProductId(id)) ids.add(id);
        } else skus.add(key.slice(4));
      }
      const gate = ctx.services.search.admission.gates.query;
      const products = await untilAborted(
        gate.run(() => getProductsByKeys(ctx.services.database.reads, { ids: [...ids], skus: [...skus] }), ctx.signal),
        ctx.signal,
      );
      const byKey = new Map<string, Product>();
      for (const p of products) {
        byKey.set(`id:${p.id}`, p);
        byKey.set(`sku:${p.sku}`, p);
      }
      return keys.map((key) => byKey.get(key) ?? null);
    }),
);

export const entityResolvers: Resolvers = {
  Product: {
    // A product that does not exist (deleted since the gateway saw it) resolves to null, as Query.product does.
    __resolveReference: (reference, ctx) => {
      const ref = reference as { id?: unknown; sku?: unknown };
      if (typeof ref.id === 'string') return productLoader(ctx).load(`id:${ref.id}`);
      if (typeof ref.sku === 'string') return productLoader(ctx).load(`sku:${ref.sku}`);
      throw badInput('a Product reference needs its id or its sku', { field: 'representations' });
    },
  },
};
