import type { Logger } from '../log.js';
import type { Services } from '../services.js';

/** What every resolver receives: the shared services and who is calling. */
export interface RequestContext {
  services: Services;
  /** The bearer token the request presented, if any (checked only by admin operations). */
  bearerToken: string | null;
  /** The request's logger: every line carries its reqId (server.ts). */
  log: Logger;
}
