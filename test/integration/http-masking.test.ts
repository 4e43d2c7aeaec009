/**
 * 5xx answers outside GraphQL are masked on the real server: a thumbnail request that hits an unexpected
 * database error (here: its table is gone) gets a generic body without the database's message, and the
 * server keeps serving.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support/service.js';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
}, 60_000);
afterAll(() => t?.stop());

it('masks an unexpected error on the thumbnail route, then keeps serving', async () => {
  await sql`DROP TABLE product_images CASCADE`.execute(t.service.services.database.db);
  const res = await fetch(`${t.url}/images/1/thumbnail.webp`);
  expect(res.status).toBe(500);
  const text = await res.text();
  expect(JSON.parse(text)).toMatchObject({ error: 'Internal server error', code: 'INTERNAL_SERVER_ERROR' });
  expect(text).not.toMatch(/product_images|relation|does not exist|at /);
  expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
});
