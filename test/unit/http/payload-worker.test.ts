/**
 * Large request payloads are handled on the payload worker (src/http/payload-worker.ts) by the main
 * thread's own rules: a JSON body parsed to the same value, with the same refusals (empty, invalid,
 * prototype poisoning) and codes as Fastify's parser; a base64 image of a query decoded to the same bytes,
 * with the same errors, as the main thread decodes a small one. Whichever thread did it, the client sees
 * the same answer. The payloads are shaped as clients send photos: a GraphQL request whose variables hold
 * base64 bytes of a phone photo's size (random bytes here: the checks look at base64, not at JPEG).
 */
import { createHash, randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskInternalErrors } from '../../../src/http/errors.js';
import { AppError } from '../../../src/errors.js';
import { registerJsonBodyParser } from '../../../src/http/json-body.js';
import { heldImageHandle, OFFLOAD_MIN_BYTES, payloadWorker } from '../../../src/http/payload-worker.js';
import { toProductInputs, toQueryImage } from '../../../src/resolvers/inputs.js';
import type { ImageInput, ProductInput } from '../../../src/schema/generated.js';
import { loadTypeDefs } from '../../../src/server.js';

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

describe("a JSON body's photos, held on the worker", () => {
  // The served schema: the worker tells image bytes from other strings by it.
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const photo = randomBytes(1_200_000);
  const base64 = photo.toString('base64');
  const held = Fastify({ logger: false, bodyLimit: 32 * 1024 * 1024 });
  let late: string[] = [];
  beforeAll(async () => {
    payloadWorker().holdImagesIn(loadTypeDefs().join('\n'));
    registerJsonBodyParser(held);
    // What a resolver sees: the variables' strings (a stand-in or the text) and what they decode to.
    held.post('/read', async (request) => {
      const { variables } = request.body as { variables: Record<string, unknown> };
      const image = (variables.image ?? { base64: variables.b }) as ImageInput;
      const query = await toQueryImage(image, 20 * 1024 * 1024);
      late = [image.base64!];
      const products = variables.p ? await toProductInputs(variables.p as ProductInput[], 20 * 1024 * 1024) : [];
      return {
        heldImage: heldImageHandle(image.base64!) !== null,
        bytes: query.kind === 'bytes' ? sha(query.bytes) : null,
        ingestText: products.map((p) => p.images?.map((i) => (i.image.base64 === base64 ? 'same' : 'other'))),
      };
    });
    held.post('/echo', async (request) => ({ body: request.body }));
    await held.ready();
  });
  afterAll(() => held.close());
  const send = (url: string, query: string, variables: Record<string, unknown>) =>
    held.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ query, variables }) });

  it('keeps an ImageInput.base64 there, given as a String variable or inside ImageInput and ProductInput values; what it decodes to is the client’s bytes', async () => {
    for (const [query, variables] of [
      ['query($b: String!) { similarProducts(image: { base64: $b }, k: 10) { score } }', { b: base64 }],
      ['query($image: ImageInput!) { similarProducts(image: $image, k: 10) { score } }', { image: { base64 } }],
      [
        'mutation($image: ImageInput!, $p: [ProductInput!]!) { upsertProducts(products: $p) { id } a: similarProducts(image: $image) { score } }',
        { image: { base64 }, p: [{ sku: 'S', title: 'T', images: [{ image: { base64 } }] }] },
      ],
    ] as const) {
      const res = await send('/read', query, variables);
      expect(res.statusCode, query).toBe(200);
      const out = res.json<{ heldImage: boolean; bytes: string; ingestText: unknown[] }>();
      expect(out.heldImage, query).toBe(true);
      expect(out.bytes, query).toBe(sha(photo));
      // Ingest reads the text back, to check it in its own words.
      if ('p' in variables) expect(out.ingestText).toEqual([['same']]);
    }
  });

  it('holds nothing a field could read as its own text: under a JSON scalar, a variable also used as text, a small photo', async () => {
    const attributes = { base64 };
    for (const [query, variables] of [
      ['mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id } }', { p: [{ sku: 'S', title: 'T', attributes }] }],
      ['query($b: String!) { similarProducts(image: { base64: $b }) { score } searchProducts(text: $b) { score } }', { b: base64 }],
      ['query($b: String!) { searchProducts(text: $b) { score } }', { b: base64 }],
      [
        'query($image: ImageInput!) { similarProducts(image: $image) { score } }',
        { image: { base64: 'aGVsbG8=' }, pad: 'x'.repeat(OFFLOAD_MIN_BYTES) },
      ],
    ] as const) {
      const res = await send('/echo', query, variables);
      expect(res.json<{ body: unknown }>().body, query).toEqual({ query, variables });
    }
  });

  it('lets them go when the request ends: a stand-in read later is REQUEST_ABORTED', async () => {
    const res = await send('/read', 'query($b: String!) { similarProducts(image: { base64: $b }) { score } }', { b: base64 });
    expect(res.json<{ heldImage: boolean }>().heldImage).toBe(true);
    const afterwards = await toQueryImage({ base64: late[0]! }, 20 * 1024 * 1024).then(
      () => null,
      (e: unknown) => e as AppError,
    );
    expect(afterwards).toBeInstanceOf(AppError);
    expect(afterwards!.code).toBe('REQUEST_ABORTED');
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
