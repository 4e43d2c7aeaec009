/**
 * What a field's selection asks for below it, so a resolver reads only that. Written here (a walk of
 * graphql-js's AST, with the operation's fragments) rather than taken from a library: the one question
 * asked is "is any of these fields selected anywhere below", and a conservative answer is enough —
 * @include/@skip are not evaluated, so a field under either counts as selected.
 */
import { Kind, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';

export function selectsAnyField(info: Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>, names: ReadonlySet<string>): boolean {
  const seenFragments = new Set<string>();
  const within = (set: SelectionSetNode | undefined): boolean =>
    !!set &&
    set.selections.some((sel) => {
      if (sel.kind === Kind.FIELD) return names.has(sel.name.value) || within(sel.selectionSet);
      if (sel.kind === Kind.INLINE_FRAGMENT) return within(sel.selectionSet);
      if (seenFragments.has(sel.name.value)) return false;
      seenFragments.add(sel.name.value);
      return within(info.fragments[sel.name.value]?.selectionSet);
    });
  return info.fieldNodes.some((node) => within(node.selectionSet));
}

/** ProductMatch's fields that need the matched photo's row (search/query.ts, NeighbourQuery.matchedPhotos). */
const MATCHED_PHOTO_FIELDS = new Set(['matchedImage', 'matchedRegion', 'imageMatches']);

/** Whether a search field's selection asks for its matches' photos. */
export const asksForMatchedPhotos = (info: Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>) =>
  selectsAnyField(info, MATCHED_PHOTO_FIELDS);
