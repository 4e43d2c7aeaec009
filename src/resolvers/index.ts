import GraphQLUpload from 'graphql-upload/GraphQLUpload.mjs';
import type { Resolvers } from '../schema/generated.js';
import { adminResolvers } from './admin.js';
import { catalogResolvers } from './catalog.js';
import { evalResolvers } from './eval.js';
import { searchResolvers } from './search.js';
import { DateTimeScalar, JSONScalar } from './scalars.js';

export const resolvers: Resolvers[] = [
  { JSON: JSONScalar, DateTime: DateTimeScalar, Upload: GraphQLUpload },
  catalogResolvers,
  searchResolvers,
  adminResolvers,
  evalResolvers,
];
