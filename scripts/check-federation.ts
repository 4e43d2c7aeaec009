/**
 * The composition check CI runs (`npm run federation:check`), as `rover subgraph check` would against a
 * graph's registry: the subgraph SDL this service hands a router (`_service { sdl }`) is composed into a
 * supergraph by Apollo's own composition library (@apollo/composition, the same code the gateway and
 * rover use). A change to src/schema/*.graphql that a router could not compose fails here, before review.
 */
import { composeServices } from '@apollo/composition';
import { graphql, parse } from 'graphql';
import { buildSchema } from '../src/resolvers/index.js';
import { loadTypeDefs } from '../src/server.js';

const schema = buildSchema(loadTypeDefs(), { introspection: true, adminToken: undefined });
const answer = await graphql({ schema, source: '{ _service { sdl } }' });
const sdl = (answer.data as { _service: { sdl: string } } | undefined)?._service.sdl;
if (!sdl) throw new Error(`_service did not answer: ${JSON.stringify(answer.errors)}`);
const result = composeServices([{ name: 'visual-search', url: 'http://visual-search.invalid/graphql', typeDefs: parse(sdl) }]);
for (const hint of result.hints ?? []) console.log(`hint: ${hint.toString()}`);
if (result.errors) {
  for (const e of result.errors) console.error(`composition error: ${e.message}`);
  process.exit(1);
}
const entities = /union _Entity = (.*)/.exec(sdl)?.[1] ?? 'none';
console.log(`the subgraph composes into a supergraph (entities: ${entities})`);
