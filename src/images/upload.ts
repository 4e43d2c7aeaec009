/** Reads a file sent with the GraphQL multipart request spec into bounded bytes. */
import type { FileUpload } from 'graphql-upload/Upload.mjs';
import { AppError, ErrorCode } from '../errors.js';

/** `upload` is what the Upload scalar yields: a promise of the file. */
export async function readUpload(upload: unknown, maxBytes: number): Promise<Buffer> {
  let file: FileUpload;
  try {
    file = await (upload as Promise<FileUpload>);
  } catch (err) {
    throw new AppError(ErrorCode.INVALID_IMAGE, 'The uploaded file could not be read', undefined, { cause: err });
  }
  if (!file || typeof file.createReadStream !== 'function') {
    throw new AppError(ErrorCode.BAD_USER_INPUT, 'image.file must be a file sent as a multipart upload');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const stream = file.createReadStream();
  try {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        stream.destroy();
        throw new AppError(ErrorCode.IMAGE_TOO_LARGE, `Uploaded file is larger than ${maxBytes} bytes`, { maxImageBytes: maxBytes });
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError(ErrorCode.INVALID_IMAGE, 'The uploaded file was cut off', undefined, { cause: err });
  }
  if (size === 0) throw new AppError(ErrorCode.INVALID_IMAGE, 'Image is empty');
  return Buffer.concat(chunks, size);
}
