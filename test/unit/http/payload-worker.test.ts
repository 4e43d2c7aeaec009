/**
 * Large request payloads are handled on the payload worker (src/http/payload-worker.ts) by the main
 * thread's own rules: a JSON body parsed to the same value, with the same refusals (empty, invalid,
 * prototype poisoning) and codes as Fastify's parser; a base64 image of a query decoded to the same bytes,
 * with the same errors, as the main thread decodes a small one. Whichever thread did it, the client sees
 * the same answer. The payloads are shaped as clients send photos: a GraphQL request whose variables hold
 * base64 bytes of a phone photo's size (random bytes here: the checks look at base64, not at JPEG).
 */
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskInternalErrors } from '../../../src/http/errors.js';
import { AppError } from '../../../src/errors.js';
import { registerJsonBodyParser } from '../../../src/http/json-body.js';
import { OFFLOAD_MIN_BYTES, payloadWorker } from '../../../src/http/payload-worker.js';
import { toQueryImage } from '../../../src/resolvers/inputs.js';

const app = Fastify({ logger: false, bodyLimit: 32 * 1024 * 1024 });
const parser = {
  get offloaded() {
    return payloadWorker().handled;
  },
};
beforeAll(async () => {
  maskInternalErrors(app);
  registerJsonBodyParser(app);
  app.post('/echo', async (request) => ({ body: request.body }));
  await app.ready();
});
afterAll(() => app.close());

const photoRequest = (bytes: number) =>
  JSON.stringify({
    query: 'query($b: String!) { similarProducts(image: { base64: $b }, k: 10) { score } }',
    variables: { b: randomBytes(bytes).toString('base64') },
  });
const post = (payload: string) => app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload });

describe('JSON bodies', () => {
  it('parses a small body on the main thread and a photo-sized one on the worker, to the same value', async () => {
    const before = parser.offloaded;
    const small = photoRequest(1024);
    expect((await post(small)).json()).toEqual({ body: JSON.parse(small) });
    expect(parser.offloaded).toBe(before);
    const large = photoRequest(1_500_000);
    expect(large.length).toBeGreaterThanOrEqual(OFFLOAD_MIN_BYTES);
    const res = await post(large);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ body: JSON.parse(large) });
    expect(parser.offloaded).toBe(before + 1);
  });

  it('answers a large invalid or poisoned body as Fastify does a small one (400, the same code)', async () => {
    const padding = 'a'.repeat(OFFLOAD_MIN_BYTES);
    for (const [name, small, large] of [
      ['invalid', '{oops', `{"pad": "${padding}", oops`],
      ['__proto__', '{"__proto__": {"admin": true}}', `{"pad": "${padding}", "__proto__": {"admin": true}}`],
      [
        'constructor.prototype',
        '{"constructor": {"prototype": {"admin": true}}}',
        `{"pad": "${padding}", "constructor": {"prototype": {"x": 1}}}`,
      ],
    ] as const) {
      const before = parser.offloaded;
      const a = await post(small);
      const b = await post(large);
      expect(parser.offloaded, name).toBe(before + 1);
      expect(a.statusCode, name).toBe(400);
      expect(b.statusCode, name).toBe(400);
      expect(b.json(), name).toEqual(a.json());
      expect(a.json<{ code: string }>().code, name).toBe('FST_ERR_CTP_INVALID_JSON_BODY');
    }
    const empty = await post('');
    expect(empty.statusCode).toBe(400);
    expect(empty.json<{ code: string }>().code).toBe('FST_ERR_CTP_EMPTY_JSON_BODY');
  });

  it('parses concurrent large bodies each to its own request', async () => {
    const bodies = Array.from({ length: 4 }, () => photoRequest(800_000));
    const answers = await Promise.all(bodies.map((b) => post(b)));
    answers.forEach((res, i) => expect(res.json()).toEqual({ body: JSON.parse(bodies[i]!) }));
  });
});

describe('base64 images of a query', () => {
  const photo = randomBytes(1_500_000); // a 12 MP phone JPEG is 3–5 MB; 1.5 MB already goes to the worker
  const caught = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => e as AppError,
    );

  it('decodes a photo-sized one on the worker to the bytes the client encoded, standard or URL-safe', async () => {
    for (const encoding of ['base64', 'base64url'] as const) {
      const before = payloadWorker().handled;
      const image = await toQueryImage({ base64: photo.toString(encoding) }, 20 * 1024 * 1024);
      expect(payloadWorker().handled).toBe(before + 1);
      if (image.kind !== 'bytes') throw new Error(`decoded to ${image.kind}`);
      expect(Buffer.compare(image.bytes, photo)).toBe(0);
    }
  });

  it('refuses a large one as it refuses a small one: not base64, or over the byte cap (same code and details)', async () => {
    const bad = (n: number) => `${photo.subarray(0, n).toString('base64')}$$`;
    const small = await caught(toQueryImage({ base64: bad(30) }, 20 * 1024 * 1024));
    const large = await caught(toQueryImage({ base64: bad(1_500_000) }, 20 * 1024 * 1024));
    expect(large).toBeInstanceOf(AppError);
    expect([large!.code, large!.message, large!.details]).toEqual([small!.code, small!.message, small!.details]);
    expect(large!.code).toBe('BAD_USER_INPUT');
    const over = await caught(toQueryImage({ base64: photo.toString('base64') }, 1_000_000));
    expect(over).toBeInstanceOf(AppError);
    expect(over!.code).toBe('IMAGE_TOO_LARGE');
    expect(over!.details).toEqual({ bytes: photo.length, maxImageBytes: 1_000_000 });
  });
});
