/**
 * The storefront page (web/) at `/`: a handful of static files, served from a fixed list made at start-up.
 * Only names found in web/ at registration are routable (no path from the request ever reaches the file
 * system, so no traversal); content types come from the extension; revalidated on each load (ETag).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { FastifyInstance } from 'fastify';

const WEB_DIR = new URL('../../web/', import.meta.url);

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
};

const SAFE_NAME = /^[a-z0-9][a-z0-9._-]*$/i;

export function storefrontFiles(): Map<string, URL> {
  const files = new Map<string, URL>();
  if (!fs.existsSync(WEB_DIR)) return files;
  for (const entry of fs.readdirSync(WEB_DIR, { withFileTypes: true })) {
    const ext = entry.name.slice(entry.name.lastIndexOf('.'));
    if (entry.isFile() && SAFE_NAME.test(entry.name) && CONTENT_TYPES[ext]) files.set(entry.name, new URL(entry.name, WEB_DIR));
  }
  return files;
}

export function registerStorefront(app: FastifyInstance): void {
  const files = storefrontFiles();
  if (!files.has('index.html')) return; // a deployment without the page: the API still serves

  const send = (name: string) => async (req: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const body = await fs.promises.readFile(files.get(name)!);
    const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;
    reply
      .header('content-type', CONTENT_TYPES[name.slice(name.lastIndexOf('.'))]!)
      .header('cache-control', 'no-cache')
      .header('etag', etag)
      .header('x-content-type-options', 'nosniff');
    if (name.endsWith('.html')) {
      reply
        .header(
          'content-security-policy',
          "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        .header('referrer-policy', 'no-referrer');
    }
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.send(body);
  };

  app.get('/', send('index.html'));
  for (const name of files.keys()) {
    if (name !== 'index.html') app.get(`/${name}`, send(name));
  }
}
