// A shopper's phone photo, made smaller in the browser before it is uploaded (issue 23): a 12–50 MP photo
// is 3–25 MB, and over a phone's connection that upload is most of the wait. The model sees 224–512 px,
// so the page keeps SIDE_FACTOR × the model's input size on the shorter side, at least MIN_SIDE (aspect
// ratio kept, EXIF orientation applied), and sends a JPEG of ~100–300 KB. The service never depends on it: it takes the
// full photo too (decoded shrunk, src/images/decode.ts), and anything this cannot read goes up as it is.

/**
 * Times the model's input size kept on the shorter side: the service decodes to 3× the model's size before
 * its Pillow-exact squash (src/images/embed.ts, DECODE_OVERSAMPLE), and a search area drawn on half the
 * photo still has 1.5× then.
 */
export const SIDE_FACTOR = 3;
/** The shorter side is never made smaller than this: 1024×768 for a 224 px model, still a photo to look at. */
export const MIN_SIDE = 768;
/** Used before the page knows the model (the largest SigLIP 2 input, 512 px). */
export const DEFAULT_MODEL_SIZE = 512;
const JPEG_QUALITY = 0.9;

/**
 * The photo to upload: `file` itself when it is no larger than needed or the browser cannot read it,
 * else a JPEG whose shorter side is max(MIN_SIDE, SIDE_FACTOR × modelSize), EXIF orientation applied.
 * @param {Blob} file
 * @param {number} [modelSize] the model's input size in pixels (embeddingModel.imageSize)
 * @returns {Promise<Blob>}
 */
export async function downsizeForUpload(file, modelSize = DEFAULT_MODEL_SIZE) {
  if (typeof createImageBitmap !== 'function') return file;
  const side = Math.max(MIN_SIDE, SIDE_FACTOR * modelSize);
  try {
    // The displayed size (orientation applied), read without decoding the pixels at full size.
    const size = await displayedSize(file);
    if (!size || Math.min(size.width, size.height) <= side) return file;
    const scale = side / Math.min(size.width, size.height);
    const width = Math.max(1, Math.round(size.width * scale));
    const height = Math.max(1, Math.round(size.height * scale));
    // resize while decoding (the browser may decode at a reduced scale), orientation applied first
    const bitmap = await createImageBitmap(file, {
      imageOrientation: 'from-image',
      resizeWidth: width,
      resizeHeight: height,
      resizeQuality: 'high',
    });
    try {
      const blob = await encodeJpeg(bitmap, width, height);
      return blob && blob.size < file.size ? blob : file;
    } finally {
      bitmap.close();
    }
  } catch {
    return file; // HEIC in a browser without it, a broken file: the service says what is wrong
  }
}

/**
 * @param {Blob} file
 * @returns {Promise<{ width: number, height: number } | null>}
 */
function displayedSize(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    const done = (/** @type {{ width: number, height: number } | null} */ v) => {
      URL.revokeObjectURL(url);
      resolve(v);
    };
    // naturalWidth/Height are after EXIF orientation (CSS image-orientation: from-image, the default)
    img.onload = () => done(img.naturalWidth > 0 ? { width: img.naturalWidth, height: img.naturalHeight } : null);
    img.onerror = () => done(null);
    img.src = url;
  });
}

/**
 * @param {ImageBitmap} bitmap
 * @param {number} width
 * @param {number} height
 * @returns {Promise<Blob | null>}
 */
async function encodeJpeg(bitmap, width, height) {
  if (typeof OffscreenCanvas === 'function') {
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d');
    if (!ctx) return null;
    ctx.fillStyle = '#fff'; // transparent PNGs: white, as the service flattens them
    ctx.fillRect(0, 0, width, height);
    ctx.drawImage(bitmap, 0, 0, width, height);
    return canvas.convertToBlob({ type: 'image/jpeg', quality: JPEG_QUALITY });
  }
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0, width, height);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
}
