/**
 * The budget of one GraphQL operation: how many similarity fields (similarProducts, searchProducts, their
 * cursor pages, compareModels) it may select, the sum of their `k` (a page's depth: its cursor's offset +
 * first + 1, what its statement ranks; compareModels' k once per model it compares), and the sum of
 * `first` of products pages (with the references of a federation gateway's `_entities` batch, one per
 * product it reads), and how many texts and photos it embeds. graphql-armor's cost rule
 * counts fields but cannot see argument values, and a value given as a variable is only known once the
 * request's variables are: so this runs in Apollo's didResolveOperation hook, with them, before any resolver.
 */
import {
  GraphQLError,
  Kind,
  valueFromASTUntyped,
  type DocumentNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';
import { LIMITS } from '../catalog/validate.js';
import { ErrorCode } from '../errors.js';
import { MAX_LABELS } from '../embedding/zero-shot.js';
import { MAX_COMPARED_MODELS } from '../search/compare.js';
import { MAX_EXAMPLES, MAX_QUERY_TERMS } from '../search/compose.js';
import { MAX_IMAGES_PER_MATCH, MAX_PAGE } from '../search/service.js';
import { MAX_K } from '../search/strategy.js';

export interface Budget {
  similarityFields: number;
  similarityK: number;
  pageFirst: number;
  embeddings: number;
}

export interface OperationCost {
  similarityFields: number;
  similarityK: number;
  pageFirst: number;
  /**
   * Texts and photos the operation may embed (each an inference, cached texts included: the cost is known
   * before the cache is read): one per image or text query (a product's stored vector: none), one per
   * model compareModels asks, one per composed-query term that needs one, classifyImage's photo and labels.
   */
  embeddings: number;
}

/** Embeddings a query image costs: none for a product's stored vector (unless a region of it is cropped). */
function imageEmbeddings(image: unknown, region: unknown): number {
  if (image == null || typeof image !== 'object') return 0;
  return 'productId' in image && image.productId != null && region == null ? 0 : 1;
}

/** A composed query's terms that need an embedding: texts, and photos other than a product's stored vector. */
function composedEmbeddings(query: unknown): number {
  const terms: unknown = query && typeof query === 'object' && 'terms' in query ? query.terms : null;
  if (!Array.isArray(terms)) return 0;
  // Beyond MAX_QUERY_TERMS the field is refused before anything is embedded.
  return terms.slice(0, MAX_QUERY_TERMS).reduce((n: number, t: unknown) => {
    if (!t || typeof t !== 'object') return n;
    const term = t as { text?: unknown; image?: unknown; region?: unknown; weight?: unknown };
    if (term.weight === 0) return n;
    return n + (term.text != null ? 1 : imageEmbeddings(term.image, term.region));
  }, 0);
}

const SIMILARITY_FIELDS = new Set(['similarProducts', 'searchProducts']);
/** Fields whose query is a photo (or a composed query), and those whose query is a text. */
const SIMILAR = new Set(['similarProducts', 'similarProductsPage']);
const TEXT_SEARCH = new Set(['searchProducts', 'searchProductsPage']);
/** Cursor pages of similarity results: a similarity query whose k is `first`. */
const SIMILARITY_PAGES = new Set(['similarProductsPage', 'searchProductsPage']);
const DEFAULT_K = 10; // the schema's default of k (and of first on the similarity pages)
const DEFAULT_FIRST = LIMITS.pageSize.default;

/** Counts the operation's similarity fields, Σk and Σfirst, following fragments (each spread counted). */
export function operationCost(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown> | undefined,
  /** How deep a similarity page's cursor starts (search/cursor.ts: verified, else 0). */
  pageDepth: (after: unknown) => number = () => 0,
): OperationCost {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const cost: OperationCost = { similarityFields: 0, similarityK: 0, pageFirst: 0, embeddings: 0 };
  // A value over the field's own maximum is refused by the resolver as BAD_USER_INPUT before any work, so
  // it counts as that maximum here (the client then learns what is wrong with the field itself).
  const intArg = (value: ValueNode | undefined, fallback: number, max: number): number => {
    if (!value) return fallback;
    const v: unknown = valueFromASTUntyped(value, variables);
    // A value that is not a number is refused later by GraphQL's own coercion; count it as the default.
    return typeof v === 'number' && Number.isFinite(v) ? Math.min(max, Math.max(0, v)) : fallback;
  };
  // Guards against fragment cycles (already a validation error, but this may run on any document).
  const visit = (set: SelectionSetNode, depth: number) => {
    if (depth > 64) return;
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) {
        const name = sel.name.value;
        const arg = (n: string) => sel.arguments?.find((a) => a.name.value === n)?.value;
        // Each product listed with its n best photos costs n matches (issue 22): k products × n photos.
        const photos = Math.max(1, intArg(arg('imagesPerProduct'), 1, MAX_IMAGES_PER_MATCH));
        const value = (n: string): unknown => {
          const v = arg(n);
          return v ? valueFromASTUntyped(v, variables) : undefined;
        };
        if (SIMILAR.has(name))
          cost.embeddings += value('query') != null ? composedEmbeddings(value('query')) : imageEmbeddings(value('image'), value('region'));
        else if (TEXT_SEARCH.has(name)) cost.embeddings += value('mode') === 'KEYWORD' ? 0 : 1;
        if (SIMILARITY_FIELDS.has(name)) {
          cost.similarityFields++;
          cost.similarityK += intArg(arg('k'), DEFAULT_K, MAX_K) * photos;
        } else if (SIMILARITY_PAGES.has(name)) {
          // The page's statement ranks every match up to the end of the page, plus one (search/service.ts).
          const after = arg('after');
          const depth = after ? pageDepth(valueFromASTUntyped(after, variables)) : 0;
          cost.similarityFields++;
          cost.similarityK += Math.min(MAX_K, depth + intArg(arg('first'), DEFAULT_K, MAX_PAGE) + 1) * photos;
        } else if (name === 'compareModels') {
          // One field that runs the query once per model: k × the models listed, or the most it compares
          // when none are (every ready model answers then, and how many that is is not known here).
          const models: unknown = arg('models') ? valueFromASTUntyped(arg('models')!, variables) : null;
          const n = Array.isArray(models) ? Math.min(models.length, MAX_COMPARED_MODELS) : MAX_COMPARED_MODELS;
          cost.similarityFields++;
          cost.similarityK += intArg(arg('k'), DEFAULT_K, MAX_K) * n * photos;
          cost.embeddings += value('text') != null ? n : n * imageEmbeddings(value('image'), value('region'));
        } else if (name === 'recommendProducts') {
          // BEST_SCORE walks once per positive example (search/service.ts, recommend()): k once per walk.
          const positive = value('positive');
          const walks =
            value('strategy') === 'BEST_SCORE' && Array.isArray(positive) ? Math.max(1, Math.min(positive.length, MAX_EXAMPLES)) : 1;
          cost.similarityFields++;
          cost.similarityK += intArg(arg('k'), DEFAULT_K, MAX_K) * walks * photos;
        } else if (name === 'classifyImage') {
          // The photo and each label's text (the labels beyond MAX_LABELS are refused before any is embedded).
          const labels = value('labels');
          cost.embeddings += imageEmbeddings(value('image'), null) + (Array.isArray(labels) ? Math.min(labels.length, MAX_LABELS) : 1);
        } else if (name === 'products') {
          cost.pageFirst += intArg(sel.arguments?.find((a) => a.name.value === 'first')?.value, DEFAULT_FIRST, LIMITS.pageSize.max);
        } else if (name === '_entities') {
          // A federation gateway's batch of Product references (resolvers/entities.ts): each reference is
          // a product read, as one row of a products page is, so the batch counts like a page of that size.
          const refs: unknown = arg('representations') ? valueFromASTUntyped(arg('representations')!, variables) : null;
          cost.pageFirst += Array.isArray(refs) ? refs.length : 0;
        }
        if (sel.selectionSet) visit(sel.selectionSet, depth + 1);
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        visit(sel.selectionSet, depth + 1);
      } else {
        const f = fragments.get(sel.name.value);
        if (f) visit(f.selectionSet, depth + 1);
      }
    }
  };
  visit(operation.selectionSet, 0);
  return cost;
}

/** Throws BUDGET_EXCEEDED (HTTP 400) when the operation's cost is over `budget`. */
export function enforceBudget(cost: OperationCost, budget: Budget, who: 'anonymous' | 'admin'): void {
  const over: Array<[string, number, number]> = [];
  if (cost.similarityFields > budget.similarityFields) over.push(['similarityFields', cost.similarityFields, budget.similarityFields]);
  if (cost.similarityK > budget.similarityK) over.push(['similarityK', cost.similarityK, budget.similarityK]);
  if (cost.pageFirst > budget.pageFirst) over.push(['pageFirst', cost.pageFirst, budget.pageFirst]);
  if (cost.embeddings > budget.embeddings) over.push(['embeddings', cost.embeddings, budget.embeddings]);
  if (!over.length) return;
  const [what, got, max] = over[0]!;
  const text: Record<string, string> = {
    similarityFields: 'similarity fields (similarProducts, searchProducts, recommendProducts)',
    similarityK: 'as the sum of k over its similarity fields',
    pageFirst: 'as the sum of first over its products pages (and of its _entities references)',
    embeddings: 'texts and photos to embed (query photos and texts, composed-query terms, classifyImage labels)',
  };
  throw new GraphQLError(
    what === 'similarityFields'
      ? `The operation selects ${got} ${text[what]}; ${who} callers may select ${max}.`
      : `The operation asks for ${got} ${text[what]}; ${who} callers may ask for ${max}.`,
    { extensions: { code: ErrorCode.BUDGET_EXCEEDED, limit: what, requested: got, max, http: { status: 400 } } },
  );
}
