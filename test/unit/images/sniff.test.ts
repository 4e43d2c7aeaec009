import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { looksLikeSvgOrXml, sniffImageType } from '../../../src/images/sniff.js';

const solid = () => sharp({ create: { width: 4, height: 4, channels: 3, background: '#08f' } });

describe('sniffImageType', () => {
  it.each([
    ['jpeg', () => solid().jpeg().toBuffer()],
    ['png', () => solid().png().toBuffer()],
    ['webp', () => solid().webp().toBuffer()],
    ['gif', () => solid().gif().toBuffer()],
    ['tiff', () => solid().tiff().toBuffer()],
    ['avif', () => solid().avif().toBuffer()],
  ] as const)('recognises %s produced by sharp', async (type, make) => {
    expect(sniffImageType(await make())).toBe(type);
  });

  it('recognises HEIF by its ftyp brand', () => {
    const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic\0\0\0\0mif1heic')]);
    expect(sniffImageType(ftyp)).toBe('heif');
  });

  it('recognises big-endian TIFF', () => {
    expect(sniffImageType(Buffer.from('MM\0*\0\0\0\x08', 'latin1'))).toBe('tiff');
  });

  it.each([
    ['html', Buffer.from('<!doctype html><p>hi</p>')],
    ['svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')],
    ['mp4', Buffer.concat([Buffer.from([0, 0, 0, 20]), Buffer.from('ftypisom\0\0\0\0mp41')])],
    ['empty', Buffer.alloc(0)],
    ['truncated png', Buffer.from([0x89, 0x50, 0x4e])],
    ['riff wave', Buffer.from('RIFF\0\0\0\0WAVEfmt ')],
    ['pdf', Buffer.from('%PDF-1.7')],
  ])('refuses %s', (_name, bytes) => {
    expect(sniffImageType(bytes)).toBeNull();
  });

  it('spots SVG and XML for a clearer message', () => {
    expect(looksLikeSvgOrXml(Buffer.from('\uFEFF  <?xml version="1.0"?><svg/>'))).toBe(true);
    expect(looksLikeSvgOrXml(Buffer.from('<SVG width="1"/>'))).toBe(true);
    expect(looksLikeSvgOrXml(Buffer.from('<!DOCTYPE svg PUBLIC>'))).toBe(true);
    expect(looksLikeSvgOrXml(Buffer.from('<html>'))).toBe(false);
  });
});
