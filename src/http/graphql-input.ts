/**
 * Checks on every string of a GraphQL request (its document's literals and its variables), before any
 * resolver runs, so no field can forget them:
 *
 * - no U+0000: PostgreSQL's text types cannot hold it, and a NUL reaching a statement failed as an
 *   internal error (issue 21) instead of the client's mistake;
 * - at most MAX_INPUT_STRING characters, except image bytes (`base64`, bounded by IMAGE_MAX_BYTES and
 *   the body limit): fields have tighter bounds of their own (catalog/validate.ts), this one is for
 *   every string element no field checks (a list's elements, JSON attributes).
 */
import { Kind, visit, type ASTNode, type DocumentNode } from 'graphql';

export const MAX_INPUT_STRING = 64 * 1024;
/** Input fields whose strings are image bytes, bounded elsewhere. */
const LARGE_STRING_FIELDS = new Set(['base64']);

export interface InvalidInput {
  path: string;
  message: string;
}

function check(value: string, path: string, key: string | undefined): InvalidInput | null {
  if (value.includes('\0')) return { path, message: `${path} contains a NUL character (U+0000), which text cannot hold` };
  if (value.length > MAX_INPUT_STRING && !(key && LARGE_STRING_FIELDS.has(key)))
    return { path, message: `${path} is longer than ${MAX_INPUT_STRING} characters` };
  return null;
}

function walk(value: unknown, path: string, key: string | undefined, depth: number): InvalidInput | null {
  if (typeof value === 'string') return check(value, path, key);
  if (depth > 32 || value === null || typeof value !== 'object') return null;
  for (const [k, v] of Array.isArray(value) ? value.entries() : Object.entries(value as Record<string, unknown>)) {
    const found = walk(v, `${path}${Array.isArray(value) ? `[${k}]` : `.${k}`}`, Array.isArray(value) ? key : String(k), depth + 1);
    if (found) return found;
  }
  return null;
}

/** The nearest named ancestor (an argument or an input object's field): the name a value is given as. */
function nameOf(parent: unknown, ancestors: readonly unknown[]): string | undefined {
  // the direct parent is not among graphql-js's `ancestors`
  const named = [...ancestors, parent]
    .reverse()
    .find((a): a is ASTNode & { name: { value: string } } => !!a && !Array.isArray(a) && (a as ASTNode).kind in NAMED);
  return named?.name.value;
}

/** The first string of the request that is not acceptable input, or null. */
export function invalidInput(document: DocumentNode, variables: Record<string, unknown> | undefined): InvalidInput | null {
  let found: InvalidInput | null = null;
  // a variable given where image bytes go (`image: { base64: $b }`) carries image bytes too
  const largeVariables = new Set<string>();
  visit(document, {
    StringValue(node, _key, parent, _path, ancestors) {
      if (found) return;
      const key = nameOf(parent, ancestors);
      found = check(node.value, key ?? 'a string in the query', key);
    },
    Variable(node, _key, parent, _path, ancestors) {
      const key = nameOf(parent, ancestors);
      if (key && LARGE_STRING_FIELDS.has(key)) largeVariables.add(node.name.value);
    },
  });
  if (found) return found;
  for (const [name, value] of Object.entries(variables ?? {})) {
    const bad = walk(value, `$${name}`, largeVariables.has(name) ? 'base64' : name, 0);
    if (bad) return bad;
  }
  return null;
}

const NAMED: Partial<Record<Kind, true>> = { [Kind.ARGUMENT]: true, [Kind.OBJECT_FIELD]: true };
