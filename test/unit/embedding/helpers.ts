import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { writeTinyModel, type TinyModelOptions } from '../../../scripts/models/tiny-model.js';

const dirs: string[] = [];

/** A fresh tiny model directory (generated in a temp dir; ~15 ms). */
export async function tinyModel(opts: TinyModelOptions = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vps-tiny-'));
  dirs.push(dir);
  await writeTinyModel(dir, opts);
  return dir;
}

export async function tempDir(prefix = 'vps-emb-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export async function cleanupDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export const solid = (width: number, height: number, rgb: [number, number, number], fmt: 'png' | 'jpeg' = 'png') =>
  sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .toFormat(fmt)
    .toBuffer();

/** Raw RGB → encoded image. */
export const fromRaw = (data: Uint8Array, width: number, height: number, fmt: 'png' | 'jpeg' = 'png', quality = 95) =>
  sharp(Buffer.from(data), { raw: { width, height, channels: 3 } })
    .toFormat(fmt, fmt === 'jpeg' ? { quality } : {})
    .toBuffer();

export const quietLog = () => {
  const lines: { level: string; args: unknown[] }[] = [];
  return {
    lines,
    info: (...args: unknown[]) => lines.push({ level: 'info', args }),
    warn: (...args: unknown[]) => lines.push({ level: 'warn', args }),
    error: (...args: unknown[]) => lines.push({ level: 'error', args }),
  };
};

export const norm = (v: Float32Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
export const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);
