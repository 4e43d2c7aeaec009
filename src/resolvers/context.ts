import type { Client } from '../http/rate-limit.js';
import type { Logger } from '../log.js';
import type { Services } from '../services.js';

/** What every resolver receives: the shared services and who is calling. */
export interface RequestContext {
  services: Services;
  /** The bearer token the request presented, if any (checked only by admin operations). */
  bearerToken: string | null;
  /** Who pays for the request's queries (src/http/rate-limit.ts); absent outside HTTP. */
  client?: Client;
  /** Holds the answer in the tarpit (a refusal, src/http/rate-limit.ts); absent outside HTTP. */
  tarpit?: () => void;
  /** The request's logger: every line carries its reqId (server.ts). */
  log: Logger;
  /** Aborts when the request passes its deadline (TIMEOUT) or the client goes away; absent outside HTTP. */
  signal?: AbortSignal;
  /** Whether a multipart request's body was cut off at HTTP_UPLOAD_MAX_BYTES (its files then fail as such). */
  uploadOverflowed?: () => boolean;
}
