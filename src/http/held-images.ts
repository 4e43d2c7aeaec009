/**
 * Which strings of a GraphQL request body are a photo's base64 (an `ImageInput.base64`), so the payload
 * worker can keep them and send the main thread a short stand-in instead (payload-worker.ts says why).
 *
 * A string is held only where the schema says it is image bytes: in a variable whose declared type holds
 * ImageInput (`$image: ImageInput!`, `$p: [ProductInput!]!`), at an `ImageInput.base64` field of the value;
 * or a `String` variable every use of which in the document is an `ImageInput.base64` field
 * (`image: { base64: $b }`, as the storefront and most clients write it). Anything else, such as a string
 * under a JSON scalar or a variable also used elsewhere, reaches the main thread as it was sent, so no
 * field can ever see a stand-in where it expects its own text.
 *
 * Written here on graphql-js's TypeInfo (no library answers this question); it runs on the worker only.
 */
import {
  buildASTSchema,
  getNamedType,
  isInputObjectType,
  Kind,
  parse,
  TypeInfo,
  typeFromAST,
  visit,
  visitWithTypeInfo,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';

const IMAGE_INPUT = 'ImageInput';
const IMAGE_FIELD = 'base64';

let cached: { sdl: string; schema: GraphQLSchema } | null = null;
/** The service's schema from its SDL (the source of the served schema), built once per SDL. */
function schemaOf(sdl: string): GraphQLSchema {
  if (cached?.sdl !== sdl) cached = { sdl, schema: buildASTSchema(parse(sdl), { assumeValidSDL: true }) };
  return cached.schema;
}

/**
 * Replaces, in `body.variables`, each photo-sized base64 of an ImageInput (at least `minLength`
 * characters) with a stand-in from `hold`, which keeps the string. Anything unexpected (no query, a
 * query that does not parse, an operation that cannot be told) holds nothing: the body goes on as sent.
 */
export function holdImageStrings(body: unknown, sdl: string, minLength: number, hold: (text: string) => string): void {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return;
  const { query, variables, operationName } = body as { query?: unknown; variables?: unknown; operationName?: unknown };
  if (typeof query !== 'string' || !variables || typeof variables !== 'object' || Array.isArray(variables)) return;
  const values = variables as Record<string, unknown>;
  let document;
  try {
    document = parse(query, { noLocation: true });
  } catch {
    return;
  }
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation =
    typeof operationName === 'string'
      ? operations.find((o) => o.name?.value === operationName)
      : operations.length === 1
        ? operations[0]
        : undefined;
  if (!operation) return;
  const schema = schemaOf(sdl);

  // String variables used only as ImageInput.base64, anywhere in the document (fragments included).
  const atImage = new Set<string>();
  const elsewhere = new Set<string>();
  const typeInfo = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Variable(node, _key, parent) {
        if (parent && !Array.isArray(parent) && (parent as { kind?: string }).kind === Kind.VARIABLE_DEFINITION) return;
        const field =
          parent && !Array.isArray(parent) && (parent as { kind?: string }).kind === Kind.OBJECT_FIELD
            ? (parent as { name: { value: string } })
            : null;
        const owner = typeInfo.getParentInputType();
        if (field?.name.value === IMAGE_FIELD && owner && getNamedType(owner).name === IMAGE_INPUT) atImage.add(node.name.value);
        else elsewhere.add(node.name.value);
      },
    }),
  );

  const holdIn = (value: unknown, type: GraphQLNamedType, depth: number): void => {
    if (depth > 32 || !value || typeof value !== 'object' || !isInputObjectType(type)) return;
    if (Array.isArray(value)) {
      for (const item of value) holdIn(item, type, depth + 1);
      return;
    }
    const object = value as Record<string, unknown>;
    const fields = type.getFields();
    for (const [key, item] of Object.entries(object)) {
      if (type.name === IMAGE_INPUT && key === IMAGE_FIELD) {
        if (typeof item === 'string' && item.length >= minLength) object[key] = hold(item);
      } else if (fields[key]) holdIn(item, getNamedType(fields[key].type), depth + 1);
    }
  };
  for (const definition of operation.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    const type = typeFromAST(schema, definition.type) as GraphQLInputType | undefined;
    if (!type || !(name in values)) continue;
    const named = getNamedType(type);
    const value = values[name];
    if (named.name === 'String' && atImage.has(name) && !elsewhere.has(name) && typeof value === 'string' && value.length >= minLength)
      values[name] = hold(value);
    else holdIn(value, named, 0);
  }
}
