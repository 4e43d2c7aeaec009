import type { Services } from '../services.js';

/** What every resolver receives: the shared services and who is calling. */
export interface RequestContext {
  services: Services;
  /** The bearer token the request presented, if any (checked only by admin operations). */
  bearerToken: string | null;
  /** Aborts when the request passes its deadline (TIMEOUT) or the client goes away; absent outside HTTP. */
  signal?: AbortSignal;
}
