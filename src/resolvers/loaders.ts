/**
 * Per-request DataLoaders: a field resolved once per parent (a product's photos on every product of a
 * page or of a search's matches) gathers its parents' keys into one statement. One loader per request,
 * so nothing is cached across requests or callers, and a write earlier in the same request (upsertProducts
 * returning its products) is read back because the loader is first used after it.
 */
import DataLoader from 'dataloader';
import { imagesOfProducts, type ProductImage } from '../db/images.js';
import type { RequestContext } from './context.js';

/** A getter for the request's own loader of one kind, made on first use. */
export function perRequest<K, V>(make: (ctx: RequestContext) => DataLoader<K, V>): (ctx: RequestContext) => DataLoader<K, V> {
  const loaders = new WeakMap<RequestContext, DataLoader<K, V>>();
  return (ctx) => {
    let loader = loaders.get(ctx);
    if (!loader) {
      loader = make(ctx);
      loaders.set(ctx, loader);
    }
    return loader;
  };
}

/**
 * Product.images: the photos of every product the request lists, in position order, with one
 * statement per batch (db/images.ts imagesOfProducts), where resolving each product alone cost a
 * statement per product (N+1 on a page of N).
 */
export const productImagesLoader = perRequest(
  (ctx) =>
    new DataLoader<string, ProductImage[]>(async (productIds) => {
      const byProduct = await imagesOfProducts(ctx.services.database.reads, productIds);
      return productIds.map((id) => byProduct.get(id) ?? []);
    }),
);
