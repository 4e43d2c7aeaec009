import { badInput } from '../errors.js';
import type { CompareQuery } from '../search/compare.js';
import type { Resolvers } from '../schema/generated.js';
import { toQueryImage } from './inputs.js';

export const searchResolvers: Resolvers = {
  Query: {
    similarProducts: async (_, { image, ...args }, ctx) => {
      const query = await toQueryImage(image, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed });
      return (await ctx.services.search.similarToImage(query, { ...args, signal: ctx.signal })).matches;
    },
    searchProducts: async (_, { text, ...args }, ctx) =>
      (await ctx.services.search.searchText(text, { ...args, signal: ctx.signal })).matches,
    similarProductsPage: async (_, { image, ...args }, ctx) => {
      const query = await toQueryImage(image, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed });
      return ctx.services.search.similarToImagePage(query, { ...args, signal: ctx.signal });
    },
    searchProductsPage: async (_, { text, ...args }, ctx) => ctx.services.search.searchTextPage(text, { ...args, signal: ctx.signal }),
    compareModels: async (_, { models, image, text, ...args }, ctx) => {
      if ((image == null) === (text == null)) throw badInput('compareModels takes exactly one of image or text', { field: 'image' });
      if (text != null && args.region != null) throw badInput('region applies to an image query', { field: 'region' });
      const query: CompareQuery =
        text != null
          ? { kind: 'text', text }
          : {
              kind: 'image',
              image: await toQueryImage(image!, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed }),
            };
      const c = await ctx.services.compare.compare(query, { ...args, signal: ctx.signal }, models);
      return {
        k: c.k,
        results: c.runs.map((r) => ({ model: r.model.id, dimension: r.model.dimension, active: r.model.isActive, matches: r.matches })),
        overlap: c.pairs.map((p) => ({ models: [p.a, p.b], shared: p.shared, jaccard: p.jaccard, rankCorrelation: p.rankCorrelation })),
        sharedByAll: c.sharedByAll,
      };
    },
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
