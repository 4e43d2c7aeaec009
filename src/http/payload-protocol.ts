/** Messages between the main thread and the payload worker (payload-worker.ts, payload-thread.ts). */
export interface PayloadWorkerInit {
  /** The nice value the worker lowers itself to (admission/thread-priority.ts). */
  threadNice: number;
}

export type PayloadToWorker =
  /** A JSON request body to parse: its UTF-8 bytes, transferred. */
  | { id: number; op: 'json'; bytes: ArrayBuffer }
  /** A base64 image of a GraphQL input to validate and decode, held to `maxBytes` once decoded. */
  | { id: number; op: 'base64'; field: string; base64: string; maxBytes: number };

export type PayloadFromWorker =
  | { id: number; value: unknown }
  /** A body Fastify's parser would answer with FST_ERR_CTP_INVALID_JSON_BODY. */
  | { id: number; invalidJson: true }
  /** The decoded image, transferred. */
  | { id: number; bytes: ArrayBuffer }
  /** An AppError as it was thrown (code, message, details), to be thrown again on the main thread. */
  | { id: number; error: { code: string; message: string; details?: Record<string, unknown> } };
