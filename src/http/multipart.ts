/**
 * GraphQL multipart requests (file uploads) on /graphql: graphql-upload parses the body into the
 * usual operation, with Upload values where the files go. Apollo's CSRF prevention still applies,
 * so clients send `Apollo-Require-Preflight: true` with uploads (README, "Uploading images").
 */
import type { FastifyInstance } from 'fastify';
import processRequest from 'graphql-upload/processRequest.mjs';

export function registerMultipart(app: FastifyInstance, opts: { maxFileBytes: number; maxFiles: number }): void {
  // Leave the stream unread here; the preValidation hook below hands it to graphql-upload.
  app.addContentTypeParser('multipart/form-data', (_request, _payload, done) => done(null));
  app.addHook('preValidation', async (request, reply) => {
    if (!request.headers['content-type']?.startsWith('multipart/form-data') || !request.url.startsWith('/graphql')) return;
    try {
      // One byte over the image cap, so that readUpload (not busboy) reports the size in our words.
      request.body = await processRequest(request.raw, reply.raw, { maxFileSize: opts.maxFileBytes + 1, maxFiles: opts.maxFiles });
    } catch (err) {
      const status = (err as { status?: number }).status ?? 400;
      return reply.code(status).send({ errors: [{ message: (err as Error).message, extensions: { code: 'BAD_REQUEST' } }] });
    }
  });
}
