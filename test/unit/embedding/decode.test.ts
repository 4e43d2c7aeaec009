import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage, inspectImage } from '../../../src/images/decode.js';
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
