import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_DECLARED_PIXELS_PER_BYTE, decodeImage, inspectImage, planShrink } from '../../../src/images/decode.js';
import { cleanupDirs, fromRaw, solid } from './helpers.js';

const limits = { maxImageBytes: 5 * 1024 * 1024, maxImagePixels: 40_000_000 };

afterAll(cleanupDirs);

/** A PNG whose header declares width×height but whose data is a few bytes (a decompression bomb's header). */
function pngWithDeclaredSize(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1000))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('images/decode', () => {
  it('decodes to 8-bit RGB with the declared size', async () => {
    const img = await decodeImage(await solid(7, 5, [10, 200, 30]), limits);
    expect([img.width, img.height, img.data.length]).toEqual([7, 5, 7 * 5 * 3]);
    expect([...img.data.subarray(0, 3)]).toEqual([10, 200, 30]);
  });

  it('refuses empty, oversized and non-image input with typed errors', async () => {
    await expect(decodeImage(Buffer.alloc(0), limits)).rejects.toMatchObject({ code: 'INVALID_IMAGE' });
    await expect(decodeImage(Buffer.from('definitely not an image'), limits)).rejects.toMatchObject({ code: 'INVALID_IMAGE' });
    const png = await solid(10, 10, [1, 2, 3]);
    await expect(decodeImage(png, { ...limits, maxImageBytes: png.length - 1 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
  });

  it('refuses truncated JPEG data (failOn) instead of returning a partial image', async () => {
    const raw = Buffer.alloc(256 * 256 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919) % 251;
    const jpeg = await fromRaw(raw, 256, 256, 'jpeg', 90);
    const truncated = jpeg.subarray(0, Math.floor(jpeg.length * 0.6));
    await expect(decodeImage(truncated, limits)).rejects.toMatchObject({ code: 'INVALID_IMAGE' });
  });

  it('refuses a decompression bomb from its header, before decoding', async () => {
    const bomb = pngWithDeclaredSize(100_000, 100_000);
    expect(bomb.length).toBeLessThan(2000);
    const t0 = performance.now();
    await expect(inspectImage(bomb, limits)).rejects.toMatchObject({
      code: 'IMAGE_TOO_LARGE',
      details: { width: 100_000, height: 100_000 },
    });
    await expect(decodeImage(bomb, limits)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(performance.now() - t0).toBeLessThan(2000); // never decoded 10¹⁰ pixels
  });

  it('enforces the pixel cap on real images', async () => {
    const png = await solid(300, 200, [0, 0, 0]);
    await expect(decodeImage(png, { ...limits, maxImagePixels: 300 * 200 - 1 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(decodeImage(png, { ...limits, maxImagePixels: 300 * 200 })).resolves.toMatchObject({ width: 300 });
  });

  it('applies EXIF orientation', async () => {
    // 40×20 landscape stored with orientation 6 (rotate 90° CW to display) → 20×40 portrait
    const jpeg = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#336699' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const img = await decodeImage(jpeg, limits);
    expect([img.width, img.height]).toEqual([20, 40]);
  });

  it('flattens alpha onto white', async () => {
    const rgba = Buffer.alloc(4 * 4 * 4); // fully transparent black
    const png = await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toBuffer();
    const img = await decodeImage(png, limits);
    expect([...img.data.subarray(0, 3)]).toEqual([255, 255, 255]);
    expect(img.data.length).toBe(4 * 4 * 3);
  });

  it('reads only the first frame of an animation', async () => {
    const red = await solid(8, 8, [255, 0, 0]);
    const blue = await solid(8, 8, [0, 0, 255]);
    const gif = await sharp([red, blue], { join: { animated: true } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const img = await decodeImage(gif, limits);
    expect([img.width, img.height]).toEqual([8, 8]);
    expect(img.data[0]).toBeGreaterThan(200);
    expect(img.data[2]).toBeLessThan(50);
  });

  it('converts greyscale to three channels', async () => {
    const grey = await sharp(Buffer.alloc(16, 128), { raw: { width: 4, height: 4, channels: 1 } })
      .png()
      .toBuffer();
    const img = await decodeImage(grey, limits);
    expect(img.data.length).toBe(48);
    expect(img.data[0]).toBe(img.data[1]);
  });
});

/** Sensor-like noise, so the file is as dense as a photo (a flat image is what the bomb guard refuses). */
const noisy = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 30 } } });

describe('images/decode: decoding shrunk to what the caller needs (issue 23)', () => {
  // a cap of 1 MP stands for IMAGE_MAX_PIXELS / SEARCH_IMAGE_MAX_PIXELS, so the images stay small and quick
  const small = { maxImageBytes: 64 * 1024 * 1024, maxImagePixels: 1_000_000 };
  const atLeast = { width: 300, height: 300 };

  it('accepts a baseline JPEG over the full-decode cap when the caller needs fewer pixels, and decodes it at that size', async () => {
    const jpeg = await noisy(1600, 1200).jpeg({ quality: 90 }).toBuffer();
    await expect(decodeImage(jpeg, small)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    const img = await decodeImage(jpeg, small, undefined, atLeast);
    expect([img.width, img.height, img.sourceWidth, img.sourceHeight]).toEqual([300, 300, 1600, 1200]);
    expect(img.data.length).toBe(300 * 300 * 3);
  });

  it('keeps the full-decode cap for formats that cannot shrink on load: PNG, progressive JPEG, lossless WebP', async () => {
    const pixels = noisy(1600, 1200);
    const progressive = await pixels.clone().jpeg({ quality: 90, progressive: true }).toBuffer();
    const png = await pixels.clone().png({ compressionLevel: 1 }).toBuffer();
    const lossless = await pixels.clone().webp({ lossless: true, effort: 0 }).toBuffer();
    for (const [name, bytes] of [
      ['progressive jpeg', progressive],
      ['png', png],
      ['lossless webp', lossless],
    ] as const) {
      await expect(decodeImage(bytes, small, undefined, atLeast), name).rejects.toMatchObject({
        code: 'IMAGE_TOO_LARGE',
        details: { maxImagePixels: 1_000_000 },
      });
    }
    // under the cap they decode as before, at full resolution
    await expect(decodeImage(png, { ...small, maxImagePixels: 2_000_000 }, undefined, atLeast)).resolves.toMatchObject({
      width: 1600,
      height: 1200,
    });
  });

  it('shrinks a lossy WebP on load', async () => {
    const webp = await noisy(1600, 1200).webp({ quality: 80 }).toBuffer();
    await expect(decodeImage(webp, small)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(decodeImage(webp, small, undefined, atLeast)).resolves.toMatchObject({ width: 300, height: 300, format: 'webp' });
  });

  it('refuses a JPEG that declares far more pixels than its bytes can carry (bomb guard), and any over the scalable cap', async () => {
    // one flat colour: every 8×8 block is a DC value and nothing else, ~170 pixels per byte
    const flat = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#808080' } })
      .jpeg({ quality: 80 })
      .toBuffer();
    expect((4000 * 3000) / flat.length).toBeGreaterThan(MAX_DECLARED_PIXELS_PER_BYTE);
    await expect(decodeImage(flat, small, undefined, atLeast)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    const jpeg = await noisy(1600, 1200).jpeg({ quality: 90 }).toBuffer();
    await expect(decodeImage(jpeg, { ...small, maxScalablePixels: 1600 * 1200 - 1 }, undefined, atLeast)).rejects.toMatchObject({
      code: 'IMAGE_TOO_LARGE',
      details: { width: 1600, height: 1200, maxImagePixels: 1600 * 1200 - 1 },
    });
  });

  it('decodes a strip, which cannot shrink along its short side, at a coarser scale that fits the cap', async () => {
    // 6000×300: 1.8 MP over the 1 MP cap; asked for 300×300 the common shrink is min(20, 1) = 1 (whole);
    // 300×100 lets 1/2 in (3000×150 decoded)
    const strip = await noisy(6000, 300).jpeg({ quality: 90 }).toBuffer();
    await expect(decodeImage(strip, small, undefined, atLeast)).resolves.toMatchObject({ width: 300, height: 100 });
  });

  it('takes a coarser DCT scale when the finer one would decode over the cap', () => {
    const jpeg = (width: number, height: number) => ({ format: 'jpeg', width, height, orientation: 1 });
    const cap = 16_000_000;
    // 12 MP for a 224 px model (3 × 224 = 672): a shrink of 4.5, decoded at 1/2 (2016×1512), under the cap
    expect(planShrink(jpeg(4032, 3024), { width: 672, height: 672 }, cap)).toEqual({ target: { width: 672, height: 672 } });
    // 24 MP for a 512 px model (1536): a shrink of 2.79 decodes whole (24.5 MP); 1428 lets 1/2 in (6.1 MP)
    expect(planShrink(jpeg(5712, 4284), { width: 1536, height: 1536 }, cap)).toEqual({ target: { width: 1536, height: 1428 } });
    // a small region of a 200 MP photo asks for more than the photo has: 1/4 (4080×3060) is the first that fits
    expect(planShrink(jpeg(16320, 12240), { width: 67200, height: 67200 }, cap)).toEqual({ target: { width: 3264, height: 2448 } });
    // small enough as it is: decoded as it is
    expect(planShrink(jpeg(600, 400), { width: 672, height: 672 }, cap)).toEqual({ target: null });
    // nothing fits, not even 1/8 (500×500): what the size asked for would cost (1/4: 1000×1000)
    expect(planShrink(jpeg(4000, 4000), { width: 672, height: 672 }, 10_000)).toEqual({ loadedPixels: 1000 * 1000 });
  });

  it('asks for the needed size in displayed orientation (EXIF 6 swaps the axes)', async () => {
    // stored 1800×600 landscape, orientation 6: displayed 600×1800 portrait
    const jpeg = await noisy(1800, 600).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer();
    const img = await decodeImage(jpeg, small, undefined, { width: 100, height: 300 });
    expect([img.width, img.height]).toEqual([100, 300]);
  });

  it('leaves an image no larger than the needed size as it is', async () => {
    const jpeg = await noisy(200, 150).jpeg().toBuffer();
    const full = await decodeImage(jpeg, small);
    const asked = await decodeImage(jpeg, small, undefined, atLeast);
    expect([asked.width, asked.height]).toEqual([200, 150]);
    expect(Buffer.compare(asked.data, full.data)).toBe(0);
  });
});
