/** `serve` blocks every libvips loader a product photo does not need; the accepted formats still decode. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

describe('blockUnneededLoaders', () => {
  it('keeps JPEG, PNG, WebP, GIF, TIFF and AVIF, and blocks SVG (in a process of its own)', async () => {
    const script = join(import.meta.dirname, '..', '..', 'fixtures', 'images', 'blocked-loaders.ts');
    const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
    const { stdout } = await promisify(execFile)(tsx, [script], { timeout: 60_000 });
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({
      jpeg: 'ok',
      png: 'ok',
      webp: 'ok',
      gif: 'ok',
      tiff: 'ok',
      avif: 'ok',
      svg: 'blocked',
    });
  });
});
