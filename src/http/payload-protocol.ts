/** Messages between the main thread and the payload worker (payload-worker.ts, payload-thread.ts). */

/** 1 MiB: below this the work takes a few ms at most, about what the round trip to the thread costs. */
export const OFFLOAD_MIN_BYTES = 1 << 20;

export interface PayloadWorkerInit {
  /** The nice value the worker lowers itself to (admission/thread-priority.ts). */
  threadNice: number;
  /** The served schema's SDL, when the service has given it (the `schema` message gives a later one). */
  sdl: string | null;
}

export type PayloadToWorker =
  /**
   * A JSON request body to parse: its UTF-8 bytes, transferred. Once the worker has the served schema's
   * SDL, its photo-sized ImageInput.base64 strings are kept on the worker (held-images.ts).
   */
  | { id: number; op: 'json'; bytes: ArrayBuffer }
  /** The served schema's SDL, by which the worker tells photos from other strings (no reply). */
  | { id: 0; op: 'schema'; sdl: string }
  /** A base64 image of a GraphQL input to validate and decode, held to `maxBytes` once decoded. */
  | { id: number; op: 'base64'; field: string; base64: string; maxBytes: number }
  /** The same for a held image, by its handle. */
  | { id: number; op: 'decodeHeld'; handle: number; field: string; maxBytes: number }
  /** A held image's base64 text itself (for a consumer that takes the text: ingest). */
  | { id: number; op: 'takeHeld'; handle: number }
  /** The request that sent these held images has ended: drop them (no reply). */
  | { id: 0; op: 'release'; handles: number[] };

export type PayloadFromWorker =
  /** A parsed body, and the handles of the images held from it. */
  | { id: number; value: unknown; held: number[] }
  /** A held image's text. */
  | { id: number; text: string }
  /** A body Fastify's parser would answer with FST_ERR_CTP_INVALID_JSON_BODY. */
  | { id: number; invalidJson: true }
  /** The decoded image, transferred. */
  | { id: number; bytes: ArrayBuffer }
  /** An AppError as it was thrown (code, message, details), to be thrown again on the main thread. */
  | { id: number; error: { code: string; message: string; details?: Record<string, unknown> } };

/**
 * What stands in, in a parsed body's variables, for an image held on the worker: this prefix and a
 * handle. Never valid base64 (`~` and `:` are in neither alphabet), so one that reached a consumer
 * unaware of it would be refused as bad input, not read as an image.
 */
export const HELD_IMAGE_PREFIX = '~held-image:';

/** The handle of a held image's stand-in, or null for any other string. */
export function heldImageHandle(text: string): number | null {
  if (!text.startsWith(HELD_IMAGE_PREFIX)) return null;
  const handle = Number(text.slice(HELD_IMAGE_PREFIX.length));
  return Number.isSafeInteger(handle) && handle > 0 ? handle : null;
}
