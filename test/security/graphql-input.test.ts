/**
 * The request-wide input checks (src/http/graphql-input.ts): every string of the document and the
 * variables, wherever it sits, with image bytes exempt from the length bound.
 */
import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { invalidInput, MAX_INPUT_STRING } from '../../src/http/graphql-input.js';

const doc = parse('query($f: ProductFilter) { products(filter: $f) { totalCount } }');

describe('request input checks', () => {
  it('find a NUL in a nested variable and in a document literal, and name where', () => {
    expect(invalidInput(doc, { f: { categories: ['ok', 'ba\u0000d'] } })?.path).toBe('$f.categories[1]');
    expect(invalidInput(parse('{ searchProducts(text: "a\\u0000b") { score } }'), {})?.path).toBe('text');
    expect(invalidInput(parse('{ searchProducts(text: "a\\u{0}b") { score } }'), {})).not.toBeNull();
  });

  it('bound every string but image bytes', () => {
    const long = 'x'.repeat(MAX_INPUT_STRING + 1);
    expect(invalidInput(doc, { f: { categories: [long] } })?.message).toMatch(/longer than/);
    expect(invalidInput(doc, { p: [{ image: { base64: long } }] })).toBeNull();
    expect(invalidInput(parse(`{ similarProducts(image: { base64: "${long}" }) { score } }`), {})).toBeNull();
    expect(invalidInput(parse(`{ searchProducts(text: "${long}") { score } }`), {})?.path).toBe('text');
    // a variable given where image bytes go is image bytes; the same variable given as text is not
    const byVariable = parse('query($b: String!) { similarProducts(image: { base64: $b }, k: 3) { score } }');
    expect(invalidInput(byVariable, { b: long })).toBeNull();
    const asText = parse('query($b: String!) { searchProducts(text: $b) { score } }');
    expect(invalidInput(asText, { b: long })?.path).toBe('$b');
  });

  it('let ordinary input through', () => {
    expect(invalidInput(doc, { f: { category: 'bags', minPrice: 10 } })).toBeNull();
  });
});
