import type { Resolvers } from '../schema/generated.js';
import { toQueryImage } from './inputs.js';

export const searchResolvers: Resolvers = {
  Query: {
    similarProducts: async (_, { image, ...args }, ctx) => {
      const query = await toQueryImage(image, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed });
      return (await ctx.services.search.similarToImage(query, { ...args, signal: ctx.signal })).matches;
    },
    searchProducts: async (_, { text, ...args }, ctx) =>
      (await ctx.services.search.similarToText(text, { ...args, signal: ctx.signal })).matches,
    embeddingModel: async (_, __, ctx) => {
      const loaded = ctx.services.models.loadedModels();
      const active = await ctx.services.models.activeModelId();
      const chosen = loaded.find((m) => m.id === active) ?? loaded[0];
      if (!chosen) return null;
      const info = chosen.embedder.info();
      return { id: chosen.id, dimension: info.dimension, imageSize: info.imageSize, provider: info.provider, active: chosen.id === active };
    },
  },
};
