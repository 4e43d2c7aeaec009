/** The non-GraphQL error handler: 5xx answers carry no internal message or stack; client errors keep theirs. */
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../src/errors.js';
import { maskInternalErrors } from '../../../src/http/errors.js';

const app = Fastify({ logger: false });
beforeAll(async () => {
  maskInternalErrors(app);
  app.get('/boom', async () => {
    throw new Error('relation "secret_table" does not exist at /srv/app/src/db/images.ts:42');
  });
  app.get('/boom-status', async () => {
    throw Object.assign(new Error('upstream socket /var/run/x.sock refused'), { statusCode: 502 });
  });
  app.get('/app-error', async () => {
    throw new AppError('NOT_FOUND', 'no such product');
  });
  app.get('/db-down', async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  });
  app.post('/json', async () => ({ ok: true }));
  await app.ready();
});
afterAll(() => app.close());

describe('maskInternalErrors', () => {
  it('answers an unexpected error with a generic 500 body (no message, no stack)', async () => {
    for (const url of ['/boom', '/boom-status']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(500);
      const body = res.json<Record<string, unknown>>();
      expect(body).toMatchObject({ error: 'Internal server error', code: 'INTERNAL_SERVER_ERROR' });
      expect(typeof body.requestId).toBe('string');
      expect(res.body).not.toMatch(/secret_table|images\.ts|sock|stack/);
    }
  });
  it('keeps stable codes for AppErrors and database faults, and Fastify’s own 4xx messages', async () => {
    const notFound = await app.inject({ method: 'GET', url: '/app-error' });
    expect(notFound.statusCode).toBe(404);
    expect(notFound.json()).toEqual({ error: 'no such product', code: 'NOT_FOUND' });
    const down = await app.inject({ method: 'GET', url: '/db-down' });
    expect(down.statusCode).toBe(503);
    expect(down.headers['retry-after']).toBe('1');
    expect(down.json()).toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
    expect(down.body).not.toMatch(/5432/);
    const bad = await app.inject({ method: 'POST', url: '/json', headers: { 'content-type': 'application/json' }, payload: '{oops' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'FST_ERR_CTP_INVALID_JSON_BODY' });
  });
});
