/**
 * Uploads are checked before they are read: the CSRF preflight header, the number of files (one for
 * anonymous callers), the total request bytes (declared or counted while streaming). Nothing is stored
 * by a refused upsert, and the server keeps serving.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN, startTestService, tinyModelDir, type TestService } from '../support/service.js';

const SIMILAR = `query($image: ImageInput!) { similarProducts(image: $image, k: 3) { score product { id } } }`;
const UPSERT = `mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id } }`;
const MAX_REQUEST = 64 * 1024;

let t: TestService;
let photo: Buffer;
beforeAll(async () => {
  t = await startTestService({ HTTP_UPLOAD_MAX_BYTES: String(MAX_REQUEST) }, { model: await tinyModelDir() });
  photo = await renderProductImage('circle', 'red', { size: 64 });
}, 120_000);
afterAll(() => t?.stop());

type Body = { data?: any; errors?: Array<{ message: string; extensions?: { code?: string } }> };

/**
 * Sends a multipart form and reads the answer even when the server sends it before the body is read (the
 * point of these refusals) and closes the connection: node:http, not fetch, because Node 24's fetch turns
 * that early answer into "fetch failed", and a real browser or proxy reads it as this does.
 */
async function post(form: FormData, headers: Record<string, string>): Promise<{ status: number; body: Body }> {
  const encoded = new Response(form); // the multipart encoding fetch would send, boundary included
  const payload = Buffer.from(await encoded.arrayBuffer());
  const target = new URL(`${t.url}/graphql`);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: { ...headers, 'content-type': encoded.headers.get('content-type')!, 'content-length': payload.length },
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body }));
        res.on('error', reject);
      },
    );
    // Writing the rest of a body the server no longer reads fails (EPIPE, ECONNRESET) once it has answered.
    req.on('error', (err) => (answered ? undefined : reject(err)));
    req.end(payload);
  });
}

function similarForm(files: Buffer[]): FormData {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: SIMILAR, variables: { image: { file: null } } }));
  form.append('map', JSON.stringify(Object.fromEntries(files.map((_, i) => [String(i), ['variables.image.file']]))));
  files.forEach((f, i) => form.append(String(i), new Blob([f], { type: 'image/png' }), `p${i}.png`));
  return form;
}

function upsertForm(n: number): FormData {
  const form = new FormData();
  const products = Array.from({ length: n }, (_, i) => ({ sku: `UP-${i}`, title: `Upload ${i}`, category: 'bags', image: { file: null } }));
  form.append('operations', JSON.stringify({ query: UPSERT, variables: { p: products } }));
  form.append('map', JSON.stringify(Object.fromEntries(products.map((_, i) => [String(i), [`variables.p.${i}.image.file`]]))));
  for (let i = 0; i < n; i++) form.append(String(i), new Blob([photo], { type: 'image/png' }), `p${i}.png`);
  return form;
}

const count = async () => (await t.gql('{ products { totalCount } }')).data.products.totalCount as number;
const preflight = { 'apollo-require-preflight': 'true' };
const admin = { ...preflight, authorization: `Bearer ${ADMIN_TOKEN}` };

describe('uploads', () => {
  it('refuses a multipart request without the preflight header before reading it (PREFLIGHT_REQUIRED), storing nothing', async () => {
    const r = await post(upsertForm(2), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(r.status).toBe(400);
    expect(r.body.errors?.[0]?.extensions?.code).toBe('PREFLIGHT_REQUIRED');
    expect(await count()).toBe(0);
  });

  it('lets anonymous callers send one file (TOO_MANY_FILES beyond), the admin token a batch', async () => {
    const two = await post(similarForm([photo, photo]), preflight);
    expect(two.status).toBe(413);
    expect(two.body.errors?.[0]?.extensions?.code).toBe('TOO_MANY_FILES');
    const one = await post(similarForm([photo]), preflight);
    expect(one.body.errors).toBeUndefined();
    const batch = await post(upsertForm(3), admin);
    expect(batch.body.errors, JSON.stringify(batch.body)).toBeUndefined();
    expect(await count()).toBe(3);
  });

  it('refuses a request whose declared length is over the cap (REQUEST_TOO_LARGE)', async () => {
    const r = await post(similarForm([Buffer.concat([photo, Buffer.alloc(MAX_REQUEST)])]), preflight);
    expect(r.status).toBe(413);
    expect(r.body.errors?.[0]?.extensions?.code).toBe('REQUEST_TOO_LARGE');
  });

  it('counts the bytes of a chunked request while streaming and cuts it off past the cap', async () => {
    const boundary = 'xBOUNDARYx';
    const ops = JSON.stringify({ query: SIMILAR, variables: { image: { file: null } } });
    const head =
      `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${ops}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.image.file"]}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="p.png"\r\nContent-Type: image/png\r\n\r\n`;
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        `${t.url}/graphql`,
        {
          method: 'POST',
          headers: { ...preflight, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(head);
      // Keeps sending until the server answers (it must, long before this ends).
      let sent = 0;
      const pump = () => {
        while (sent < 8 * MAX_REQUEST) {
          sent += 4096;
          if (!req.write(Buffer.alloc(4096, 1))) {
            req.once('drain', pump);
            return;
          }
        }
        req.end(`\r\n--${boundary}--\r\n`);
      };
      pump();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body).errors[0].extensions.code).toBe('REQUEST_TOO_LARGE');
  });

  it('keeps serving a good client afterwards', async () => {
    const r = await post(similarForm([photo]), preflight);
    expect(r.body.errors).toBeUndefined();
    expect(
      r.body.data.similarProducts.length,
      JSON.stringify([await count(), (await t.gql('{ products { edges { node { id imageSha256 } } } }')).data]),
    ).toBeGreaterThan(0);
  });
});
