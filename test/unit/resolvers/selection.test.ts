/**
 * Whether a search field's selection asks for its matches' photos (src/resolvers/selection.ts): the search
 * statement reads the matched photo's row only then, so a miss here would answer matchedImage with null.
 * The documents are parsed by graphql-js, and the field's nodes and fragments are the ones its executor
 * hands a resolver.
 */
import { Kind, parse, type FragmentDefinitionNode, type OperationDefinitionNode, type FieldNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { asksForMatchedPhotos } from '../../../src/resolvers/selection.js';

/** The first root field's resolve info, as far as the walk reads it. */
function infoOf(document: string) {
  const doc = parse(document);
  const operation = doc.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)!;
  const fragments = Object.fromEntries(
    doc.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((f) => [f.name.value, f]),
  );
  return { fieldNodes: [operation.selectionSet.selections[0] as FieldNode], fragments };
}

describe('asksForMatchedPhotos', () => {
  it('sees matchedImage, matchedRegion and imageMatches selected directly, in a named fragment, an inline fragment and a page', () => {
    for (const doc of [
      '{ similarProducts(productId: "1") { score matchedImage { id } } }',
      '{ similarProducts(productId: "1") { matchedRegion { x } } }',
      '{ searchProducts(text: "bag") { imageMatches { score } } }',
      '{ similarProducts(productId: "1") { ...M } } fragment M on ProductMatch { product { id } matchedImage { id } }',
      '{ similarProducts(productId: "1") { ...A } } fragment A on ProductMatch { ...B } fragment B on ProductMatch { matchedImage { id } }',
      '{ similarProducts(productId: "1") { ... on ProductMatch { matchedImage { id } } } }',
      '{ similarProductsPage(productId: "1") { edges { node { ...M } } } } fragment M on ProductMatch { matchedImage { id } }',
      // Conservative: @skip and @include are not evaluated.
      '{ similarProducts(productId: "1") { matchedImage @skip(if: true) { id } } }',
    ])
      expect(asksForMatchedPhotos(infoOf(doc)), doc).toBe(true);
  });

  it("does not see them where none is selected, a product's own photos included", () => {
    for (const doc of [
      '{ similarProducts(productId: "1") { score product { id sku } } }',
      '{ similarProducts(productId: "1") { product { images { id } } } }',
      '{ similarProducts(productId: "1") { ...M } } fragment M on ProductMatch { score } fragment Unused on ProductMatch { matchedImage { id } }',
      '{ similarProductsPage(productId: "1") { edges { cursor node { score } } pageInfo { hasNextPage } } }',
    ])
      expect(asksForMatchedPhotos(infoOf(doc)), doc).toBe(false);
  });
});
