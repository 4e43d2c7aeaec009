/**
 * The service as an operator runs it: a real process started by the CLI entry, on the embedded
 * database. SIGTERM lets an in-flight request finish, then the process exits cleanly; invalid settings
 * stop start-up with a message naming the setting.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { vpsArgs } from '../support/vps-command.js';

const TOKEN = 'process-test-admin-token-123';
const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-proc-'));
  const child = spawn(process.execPath, vpsArgs('serve'), {
    env: {
      ...process.env,
      PORT: '0',
      PGLITE_PSQL_PORT: '0',
      DATA_DIR: dataDir,
      MODEL_AUTO_FETCH: 'false',
      LOG_LEVEL: 'warn',
      ADMIN_TOKEN: TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no address printed; output: ${out}`)), 150_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /GraphQL:\s+(http:\/\/\S+)\/graphql/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  });
  return { child, url, exited };
}

describe('the service process', () => {
  it('drains an in-flight request on SIGTERM, then exits 0', { timeout: 240_000 }, async () => {
    const png = await renderProductImage('circle', 'red', { size: 64 });
    // An image server that answers slowly, so the upsert is still running when SIGTERM arrives.
    const slow = http.createServer((_req, res) => setTimeout(() => res.writeHead(200, { 'content-type': 'image/png' }).end(png), 1500));
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const port = (slow.address() as { port: number }).port;
    try {
      const { child, url, exited } = await startProcess({ IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS: 'localhost' });
      const inFlight = fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({
          query: 'mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { sku imageSha256 } }',
          variables: { p: [{ sku: 'SLOW-1', title: 'Slow', category: 'bags', image: { url: `http://localhost:${port}/p.png` } }] },
        }),
      });
      await new Promise((r) => setTimeout(r, 400));
      child.kill('SIGTERM');
      const res = await inFlight;
      expect(res.status).toBe(200);
      // The drained response closes its keep-alive connection: otherwise shutdown waits Fastify's 72 s keepAliveTimeout.
      expect(res.headers.get('connection')).toBe('close');
      const body = (await res.json()) as any;
      expect(body.errors).toBeUndefined();
      expect(body.data.upsertProducts[0].sku).toBe('SLOW-1');
      expect(await exited).toBe(0);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      slow.close();
    }
  });

  it('refuses to start on an invalid setting, naming it without echoing secrets', () => {
    const r = spawnSync(process.execPath, vpsArgs('serve'), {
      env: { ...process.env, PORT: 'not-a-port', ADMIN_TOKEN: 'short-secret', DATABASE_URL: 'mysql://x' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/PORT/);
    expect(r.stderr).toMatch(/ADMIN_TOKEN: must be at least 16 characters/);
    expect(r.stderr).toMatch(/DATABASE_URL/);
    expect(r.stderr).not.toMatch(/short-secret|mysql:\/\/x/);
  });
});
