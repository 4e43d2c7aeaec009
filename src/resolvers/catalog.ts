import { deleteProduct, findProduct, pageProducts } from '../catalog/catalog.js';
import { ingestProducts } from '../catalog/ingest.js';
import type { Resolvers } from '../schema/generated.js';
import { requireAdmin } from './auth.js';
import { decodeCursor, encodeCursor, toProductInputs } from './inputs.js';
import { productImagesLoader } from './loaders.js';

export const catalogResolvers: Resolvers = {
  Query: {
    // Storefront reads: the read replicas when configured (the admin's requests are routed to the primary).
    product: (_, { id }, ctx) => findProduct(ctx.services.database.reads, id),
    products: async (_, { filter, first, after }, ctx) => {
      const afterId = after != null ? decodeCursor(after) : null;
      const page = await pageProducts(ctx.services.database.reads, { filter, first, afterId });
      const edges = page.products.map((p) => ({ cursor: encodeCursor(p.id), node: p }));
      return {
        edges,
        pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        totalCount: page.totalCount, // resolves lazily: counted only when asked for
      };
    },
  },
  ProductConnection: {
    totalCount: (parent) => parent.totalCount(),
  },
  Product: {
    // The main photo's thumbnail by product id: no photo lookup per product listed.
    thumbnailUrl: (p) => (p.imageSha256 ? `/products/${p.id}/thumbnail.webp?v=${p.imageSha256.slice(0, 12)}` : null),
    // Gathered per request: a page or a search's matches cost one photos statement, not one per product.
    images: (p, _, ctx) => productImagesLoader(ctx).load(p.id),
  },
  ProductImage: {
    // A photo's id changes whenever its bytes do (migration 0010): the URL needs no cache buster.
    thumbnailUrl: (img) => `/images/${img.id}/thumbnail.webp`,
    url: (img) => img.sourceUrl,
  },
  Mutation: {
    upsertProducts: async (_, { products }, ctx) => {
      requireAdmin(ctx);
      const { ingest, imageLimits } = ctx.services;
      return ingestProducts(
        ingest,
        await toProductInputs(products, imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed }),
      );
    },
    deleteProduct: (_, { id }, ctx) => {
      requireAdmin(ctx);
      return deleteProduct(ctx.services.database.db, id);
    },
  },
};
