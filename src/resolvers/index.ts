import type { Resolvers } from '../schema/generated.js';
import { catalogResolvers } from './catalog.js';
import { searchResolvers } from './search.js';
import { DateTimeScalar, JSONScalar } from './scalars.js';

export const resolvers: Resolvers[] = [{ JSON: JSONScalar, DateTime: DateTimeScalar }, catalogResolvers, searchResolvers];
