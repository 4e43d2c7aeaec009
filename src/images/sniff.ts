/**
 * Image type by magic bytes. A server's Content-Type is never trusted: these bytes decide.
 *
 * Accepted: the raster formats decode.ts accepts (JPEG, PNG, WebP, GIF, AVIF, HEIF, TIFF).
 * Refused on purpose: SVG. Rendering SVG means an XML parser plus a vector renderer on user input: entity
 * expansion, references to external resources, and tiny files that render to huge or very slow images
 * (decompression bombs). Product photos are raster images, so nothing is lost by refusing it.
 */
export type SniffedType = 'jpeg' | 'png' | 'webp' | 'gif' | 'avif' | 'heif' | 'tiff';

const ascii = (buf: Uint8Array, start: number, end: number) => Buffer.from(buf.subarray(start, end)).toString('latin1');

/** ISO BMFF brands that mean AVIF or HEIF still images (or sequences, whose first frame sharp reads). */
const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs', 'mif1', 'msf1']);

function sniffIsoBmff(buf: Uint8Array): SniffedType | null {
  if (buf.length < 12 || ascii(buf, 4, 8) !== 'ftyp') return null;
  const boxSize = Buffer.from(buf.subarray(0, 4)).readUInt32BE(0);
  const brands = [ascii(buf, 8, 12)];
  // compatible brands follow the major brand and minor version, up to the end of the ftyp box
  const end = Math.min(buf.length, boxSize >= 16 ? boxSize : 12);
  for (let i = 16; i + 4 <= end; i += 4) brands.push(ascii(buf, i, i + 4));
  if (brands.some((b) => AVIF_BRANDS.has(b))) return 'avif';
  if (brands.some((b) => HEIF_BRANDS.has(b))) return 'heif';
  return null;
}

/** The image type of `buf` by its first bytes, or null when it is not an accepted image format. */
export function sniffImageType(buf: Uint8Array): SniffedType | null {
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return 'jpeg';
  if (buf.length >= 8 && ascii(buf, 0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (buf.length >= 6 && (ascii(buf, 0, 6) === 'GIF87a' || ascii(buf, 0, 6) === 'GIF89a')) return 'gif';
  if (buf.length >= 12 && ascii(buf, 0, 4) === 'RIFF' && ascii(buf, 8, 12) === 'WEBP') return 'webp';
  if (buf.length >= 4 && (ascii(buf, 0, 4) === 'II*\x00' || ascii(buf, 0, 4) === 'MM\x00*')) return 'tiff';
  return sniffIsoBmff(buf);
}

/** True when the bytes look like SVG or other XML (for a clearer refusal message). */
export function looksLikeSvgOrXml(buf: Uint8Array): boolean {
  let text = Buffer.from(buf.subarray(0, 512)).toString('utf8');
  text = text
    .replace(/^\uFEFF/, '')
    .trimStart()
    .toLowerCase();
  return text.startsWith('<?xml') || text.startsWith('<svg') || text.startsWith('<!doctype svg');
}
