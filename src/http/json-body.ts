/**
 * JSON request bodies, parsed where their cost falls on nobody else: small ones on the main thread by
 * Fastify's own parser, those of OFFLOAD_MIN_BYTES and more (base64 photos) on the payload worker
 * (payload-worker.ts, which says why), by the same rules and with the same error codes.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OFFLOAD_MIN_BYTES, payloadWorker } from './payload-worker.js';

/** The photos the payload worker holds for a request (payload-worker.ts holdImagesIn), released when it ends. */
const heldFor = new WeakMap<FastifyRequest, number[]>();

/** Replaces Fastify's `application/json` parser with one that sends large bodies to the payload worker. */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const inline = app.getDefaultJsonParser('error', 'error'); // the rules of payload-thread.ts's JSON_RULES
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    if (body.length < OFFLOAD_MIN_BYTES) {
      void inline(request, body.toString('utf8'), done); // Fastify's own parser, synchronous
      return;
    }
    void payloadWorker()
      .parseJson(body)
      .then(
        ({ value, held }) => {
          if (held.length) heldFor.set(request, held);
          done(null, value);
        },
        (err: Error) => done(err, undefined),
      );
  });
  // Answered, failed or abandoned by its client: the request's held photos go.
  const release = (request: FastifyRequest) => {
    const held = heldFor.get(request);
    if (!held) return;
    heldFor.delete(request);
    payloadWorker().release(held);
  };
  app.addHook('onResponse', (request, _reply, done) => {
    release(request);
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    release(request);
    done();
  });
}
