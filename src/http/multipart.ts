/**
 * GraphQL multipart requests (file uploads) on /graphql: graphql-upload parses the body into the
 * usual operation, with Upload values where the files go. Checked before a byte of a file is read:
 *  - the CSRF preflight header (Apollo's: `Apollo-Require-Preflight` or `X-Apollo-Operation-Name`), since
 *    a multipart form is a "simple" request a browser sends cross-site without asking; Apollo's own check
 *    would come only after graphql-upload had buffered the files to disk;
 *  - the number of files: one for anonymous callers, the batch limit for the admin token;
 *  - the total request bytes: a declared Content-Length over the cap is refused at once, and the bytes are
 *    counted while streaming (a client that sends no length, or lies, is cut off at the first byte over).
 * graphql-upload deletes its temporary files when the response closes, also on abort.
 */
import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import processRequest from 'graphql-upload/processRequest.mjs';
import { ErrorCode } from '../errors.js';

export interface MultipartOptions {
  maxFileBytes: number;
  /** Files per request for the admin token (the upsert batch limit). */
  maxFiles: number;
  /** Files per request for everyone else. */
  anonymousMaxFiles: number;
  /** Bytes of the whole multipart body. */
  maxRequestBytes: number;
  /** Whether the request carries the admin token. */
  isAdmin(request: FastifyRequest): boolean;
}

/** Requests whose body went over the cap after graphql-upload had handed the operation on (see readUpload). */
const overflowed = new WeakSet<IncomingMessage>();

/** Whether this request's body was cut off at the byte cap (a file read then fails with REQUEST_TOO_LARGE). */
export function uploadOverflowed(raw: IncomingMessage): boolean {
  return overflowed.has(raw);
}

const refuse = (reply: FastifyReply, status: number, code: string, message: string, extra: Record<string, unknown> = {}) =>
  reply.code(status).send({ errors: [{ message, extensions: { code, ...extra } }] });

export function registerMultipart(app: FastifyInstance, opts: MultipartOptions): void {
  // Leave the stream unread here; the preValidation hook below hands it to graphql-upload.
  app.addContentTypeParser('multipart/form-data', (_request, _payload, done) => done(null));
  app.addHook('preValidation', async (request, reply) => {
    if (!request.headers['content-type']?.startsWith('multipart/form-data') || !request.url.startsWith('/graphql')) return;
    const h = request.headers;
    if (!h['apollo-require-preflight'] && !h['x-apollo-operation-name']) {
      return refuse(
        reply,
        400,
        ErrorCode.PREFLIGHT_REQUIRED,
        'Multipart uploads need the header "Apollo-Require-Preflight: true" (CSRF protection).',
      );
    }
    const declared = Number(h['content-length']);
    if (Number.isFinite(declared) && declared > opts.maxRequestBytes) {
      void reply.header('connection', 'close');
      return refuse(reply, 413, ErrorCode.REQUEST_TOO_LARGE, `The request is larger than ${opts.maxRequestBytes} bytes.`, {
        maxRequestBytes: opts.maxRequestBytes,
      });
    }
    const admin = opts.isAdmin(request);
    const maxFiles = admin ? opts.maxFiles : opts.anonymousMaxFiles;
    const counted = countingStream(request.raw, opts.maxRequestBytes);
    try {
      // One byte over the image cap, so that readUpload (not busboy) reports the size in our words.
      request.body = await processRequest(counted.stream, reply.raw, { maxFileSize: opts.maxFileBytes + 1, maxFiles });
    } catch (err) {
      if (counted.overflowed()) {
        void reply.header('connection', 'close'); // the rest of the body is not read
        return refuse(reply, 413, ErrorCode.REQUEST_TOO_LARGE, `The request is larger than ${opts.maxRequestBytes} bytes.`, {
          maxRequestBytes: opts.maxRequestBytes,
        });
      }
      const status = (err as { status?: number }).status ?? 400;
      const message = (err as Error).message;
      if (status === 413 && /max file uploads exceeded/i.test(message)) {
        void reply.header('connection', 'close');
        return refuse(
          reply,
          413,
          ErrorCode.TOO_MANY_FILES,
          `${admin ? 'A request' : 'An anonymous request'} may send at most ${maxFiles} file${maxFiles === 1 ? '' : 's'}.`,
          { maxFiles },
        );
      }
      return reply.code(status).send({ errors: [{ message, extensions: { code: 'BAD_REQUEST' } }] });
    }
  });
}

/**
 * The request body through a byte counter that fails past `max`; it looks enough like the request for
 * graphql-upload (headers, pipe/unpipe, close), which then stops and releases what it buffered.
 */
function countingStream(raw: IncomingMessage, max: number): { stream: IncomingMessage; overflowed(): boolean } {
  let total = 0;
  let over = false;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      total += chunk.length;
      if (total > max) {
        over = true;
        overflowed.add(raw);
        raw.unpipe(counter);
        callback(new Error('request body over the byte cap'));
        return;
      }
      callback(null, chunk);
    },
  });
  counter.on('error', () => {}); // reported as REQUEST_TOO_LARGE above
  raw.pipe(counter);
  raw.once('close', () => {
    if (!raw.readableEnded) counter.destroy();
  });
  const stream = Object.assign(counter, { headers: raw.headers });
  return { stream: stream as unknown as IncomingMessage, overflowed: () => over };
}
