import { badInput } from '../errors.js';
import type { CompareQuery } from '../search/compare.js';
import type { ComposedQuery, ImageInput, Resolvers } from '../schema/generated.js';
import { validateId } from '../catalog/validate.js';
import { labelPrompts } from '../embedding/zero-shot.js';
import { checkWeights } from '../search/compose.js';
import type { ComposedTerm } from '../search/service.js';
import type { RequestContext } from './context.js';
import { toQueryImage } from './inputs.js';
import { asksForMatchedPhotos } from './selection.js';

/** similarProducts takes exactly one of image or query. */
function queryImage(image: ImageInput | null | undefined): ImageInput {
  if (image == null) throw badInput('similarProducts takes exactly one of image or query', { field: 'image' });
  return image;
}

/** A composed query's terms: each exactly one of image or text, its photo read like any query image's. */
async function composedTerms(image: ImageInput | null | undefined, query: ComposedQuery, ctx: RequestContext): Promise<ComposedTerm[]> {
  if (image != null) throw badInput('similarProducts takes exactly one of image or query', { field: 'image' });
  // The terms' count and weights are refused before any photo is read (the service checks them again).
  checkWeights(query.terms.map((t) => t.weight ?? 1));
  return Promise.all(
    query.terms.map(async (term, i): Promise<ComposedTerm> => {
      const field = `query.terms[${i}]`;
      const weight = term.weight ?? 1;
      if ((term.image == null) === (term.text == null)) throw badInput(`${field} takes exactly one of image or text`, { field });
      if (term.text != null) {
        if (term.region != null) throw badInput(`${field}.region applies to an image term`, { field: `${field}.region` });
        return { kind: 'text', text: term.text, weight };
      }
      const photo = await toQueryImage(term.image!, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed });
      return { kind: 'image', image: photo, region: term.region ?? null, weight };
    }),
  );
}

export const searchResolvers: Resolvers = {
  Query: {
    similarProducts: async (_, { image, query, ...args }, ctx, info) => {
      const search = { ...args, signal: ctx.signal, matchedPhotos: asksForMatchedPhotos(info) };
      if (query != null) return (await ctx.services.search.similarToComposed(await composedTerms(image, query, ctx), search)).matches;
      const photo = await toQueryImage(queryImage(image), ctx.services.imageLimits.maxImageBytes, {
        requestOverflowed: ctx.uploadOverflowed,
      });
      return (await ctx.services.search.similarToImage(photo, search)).matches;
    },
    searchProducts: async (_, { text, ...args }, ctx, info) =>
      (await ctx.services.search.searchText(text, { ...args, signal: ctx.signal, matchedPhotos: asksForMatchedPhotos(info) })).matches,
    similarProductsPage: async (_, { image, query, ...args }, ctx, info) => {
      const search = { ...args, signal: ctx.signal, matchedPhotos: asksForMatchedPhotos(info) };
      if (query != null) return ctx.services.search.similarToComposedPage(await composedTerms(image, query, ctx), search);
      const photo = await toQueryImage(queryImage(image), ctx.services.imageLimits.maxImageBytes, {
        requestOverflowed: ctx.uploadOverflowed,
      });
      return ctx.services.search.similarToImagePage(photo, search);
    },
    searchProductsPage: async (_, { text, ...args }, ctx, info) =>
      ctx.services.search.searchTextPage(text, { ...args, signal: ctx.signal, matchedPhotos: asksForMatchedPhotos(info) }),
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
    recommendProducts: async (_, { positive, negative, ...args }, ctx) => {
      const ids = (list: readonly string[], field: string) => list.map((id, i) => validateId(`${field}[${i}]`, id));
      const search = { ...args, positive: ids(positive, 'positive'), negative: ids(negative ?? [], 'negative'), signal: ctx.signal };
      return (await ctx.services.search.recommend(search)).matches;
    },
    classifyImage: async (_, { image, labels, ...args }, ctx) => {
      // The labels are checked before the photo is read (search/service.ts checks them again).
      labelPrompts(labels, args.template ?? undefined);
      const photo = await toQueryImage(image, ctx.services.imageLimits.maxImageBytes, { requestOverflowed: ctx.uploadOverflowed });
      return ctx.services.search.classifyImage(photo, labels, { ...args, signal: ctx.signal });
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
