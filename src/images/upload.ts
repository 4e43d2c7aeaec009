/** Reads a file sent with the GraphQL multipart request spec into bounded bytes. */
import type { FileUpload } from 'graphql-upload/Upload.mjs';
import { AppError, ErrorCode } from '../errors.js';

/**
 * `upload` is what the Upload scalar yields: a promise of the file (typed unknown by the scalar, checked
 * below). Called by the GraphQL surface, which hands the domain the bytes.
 */
export async function readUpload(upload: Promise<unknown>, maxBytes: number, opts: UploadReadOptions = {}): Promise<Buffer> {
  try {
    return await read(upload, maxBytes);
  } catch (err) {
    // A file cut short because the whole request went over its byte cap (http/multipart.ts) says so.
    if (opts.requestOverflowed?.()) {
      throw new AppError(ErrorCode.REQUEST_TOO_LARGE, 'The request is larger than the upload limit (HTTP_UPLOAD_MAX_BYTES).', undefined, {
        cause: err,
      });
    }
    throw err;
  }
}

export interface UploadReadOptions {
  /** Whether the request this file came in was cut off at the request byte cap. */
  requestOverflowed?: () => boolean;
}

async function read(upload: Promise<unknown>, maxBytes: number): Promise<Buffer> {
  let file: FileUpload;
  try {
    file = (await upload) as FileUpload;
  } catch (err) {
    throw uploadError(err, maxBytes);
  }
  if (!file || typeof file.createReadStream !== 'function') {
    throw new AppError(ErrorCode.BAD_USER_INPUT, 'image.file must be a file sent as a multipart upload');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let stream: ReturnType<FileUpload['createReadStream']> | undefined;
  try {
    // createReadStream itself throws when the upload already failed (e.g. over the size limit).
    stream = file.createReadStream();
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        stream.destroy();
        throw new AppError(ErrorCode.IMAGE_TOO_LARGE, `Uploaded file is larger than ${maxBytes} bytes`, { maxImageBytes: maxBytes });
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw uploadError(err, maxBytes);
  }
  if (size === 0) throw new AppError(ErrorCode.INVALID_IMAGE, 'Image is empty');
  return Buffer.concat(chunks, size);
}

function uploadError(err: unknown, maxBytes: number): AppError {
  if (err instanceof AppError) return err;
  // graphql-upload fails the file with an HTTP 413 error once its own size limit is passed.
  if ((err as { status?: number }).status === 413) {
    return new AppError(
      ErrorCode.IMAGE_TOO_LARGE,
      `Uploaded file is larger than ${maxBytes} bytes`,
      { maxImageBytes: maxBytes },
      { cause: err },
    );
  }
  return new AppError(ErrorCode.INVALID_IMAGE, 'The uploaded file could not be read completely', undefined, { cause: err });
}
