import { deleteProduct, findProduct, pageProducts } from '../catalog/catalog.js';
import { ingestProducts } from '../catalog/ingest.js';
import { encodeCursor } from '../catalog/validate.js';
import type { Resolvers } from '../schema/generated.js';
import { requireAdmin } from './auth.js';

export const catalogResolvers: Resolvers = {
  Query: {
    product: (_, { id }, ctx) => findProduct(ctx.services.database.db, id),
    products: async (_, args, ctx) => {
      const page = await pageProducts(ctx.services.database.db, args);
      const edges = page.products.map((p) => ({ cursor: encodeCursor(p.id), node: p }));
      return {
        edges,
        pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        totalCount: page.totalCount,
      } as never; // totalCount resolves lazily: counted only when asked for
    },
  },
  ProductConnection: {
    totalCount: (parent) => (parent as unknown as { totalCount: () => Promise<number> }).totalCount(),
  },
  Product: {
    thumbnailUrl: (p) => (p.imageSha256 ? `/images/${p.id}/thumbnail.webp?v=${p.imageSha256.slice(0, 12)}` : null),
  },
  Mutation: {
    upsertProducts: (_, { products }, ctx) => {
      requireAdmin(ctx);
      const { database, models, fetchOptions, imageLimits } = ctx.services;
      return ingestProducts({ db: database.db, models, fetchOptions, imageLimits }, products);
    },
    deleteProduct: (_, { id }, ctx) => {
      requireAdmin(ctx);
      return deleteProduct(ctx.services.database.db, id);
    },
  },
};
