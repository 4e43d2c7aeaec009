import { deleteProduct, findProduct, pageProducts, upsertProducts } from '../catalog/catalog.js';
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
  Mutation: {
    upsertProducts: (_, { products }, ctx) => {
      requireAdmin(ctx);
      return upsertProducts(ctx.services.database.db, products);
    },
    deleteProduct: (_, { id }, ctx) => {
      requireAdmin(ctx);
      return deleteProduct(ctx.services.database.db, id);
    },
  },
};
