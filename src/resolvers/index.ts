import { buildSubgraphSchema } from '@apollo/subgraph';
import { Kind, parse, type DocumentNode, type GraphQLFieldResolver, type GraphQLSchema } from 'graphql';
import GraphQLUpload from 'graphql-upload/GraphQLUpload.mjs';
import { AppError, ErrorCode } from '../errors.js';
import type { Resolvers } from '../schema/generated.js';
import { adminResolvers } from './admin.js';
import { isAdminToken } from './auth.js';
import { catalogResolvers } from './catalog.js';
import type { RequestContext } from './context.js';
import { entityResolvers } from './entities.js';
import { evalResolvers } from './eval.js';
import { intelligenceResolvers } from './intelligence.js';
import { searchResolvers } from './search.js';
import { DateTimeScalar, JSONScalar } from './scalars.js';

export const resolvers: Resolvers[] = [
  { JSON: JSONScalar, DateTime: DateTimeScalar, Upload: GraphQLUpload },
  catalogResolvers,
  entityResolvers,
  searchResolvers,
  adminResolvers,
  evalResolvers,
  intelligenceResolvers,
];

/**
 * The executable schema: the SDL of src/schema/*.graphql with these resolvers, built as an Apollo
 * Federation 2 subgraph (federation.graphql), which adds Query._entities and Query._service. Clients that
 * do not use those see the same schema as before; a gateway or router can compose this service.
 *
 * `_service { sdl }` hands out the whole SDL, so it follows GRAPHQL_INTROSPECTION: where introspection is
 * off (production's default) it answers only the admin token, which a router composing at start-up
 * (IntrospectAndCompose) sends; a supergraph composed offline (rover, @apollo/composition) needs no query.
 */
export function buildSchema(typeDefs: string[], opts: { introspection: boolean; adminToken: string | undefined }): GraphQLSchema {
  const none: DocumentNode = { kind: Kind.DOCUMENT, definitions: [] };
  const schema = buildSubgraphSchema(
    // One module per resolver map keeps each map whole (Query has fields in several); the SDL comes once.
    resolvers.map((r, i) => ({ typeDefs: i === 0 ? parse(typeDefs.join('\n')) : none, resolvers: r as never })),
  );
  if (!opts.introspection) {
    const field = schema.getQueryType()!.getFields()._service!;
    const resolve: GraphQLFieldResolver<unknown, RequestContext> = field.resolve!;
    field.resolve = (parent, args, ctx: RequestContext, info) => {
      if (!isAdminToken(opts.adminToken, ctx.bearerToken))
        throw new AppError(
          ErrorCode.FORBIDDEN,
          '_service answers only the admin token while introspection is off (GRAPHQL_INTROSPECTION).',
        );
      return resolve(parent, args, ctx, info);
    };
  }
  return schema;
}
