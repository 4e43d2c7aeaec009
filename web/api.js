// Talking to the public GraphQL API, and turning its errors into messages for shoppers.

export class ApiError extends Error {
  /**
   * @param {string} code extensions.code of the first error, or HTTP_<status> / NETWORK
   * @param {string} message
   * @param {Record<string, unknown>} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/**
 * POSTs a query as JSON (Apollo's CSRF prevention accepts that without a preflight header).
 * @param {string} query
 * @param {Record<string, unknown>} [variables]
 * @param {AbortSignal} [signal]
 */
export function gql(query, variables = {}, signal) {
  return post({
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
    signal,
  });
}

/**
 * A query with files, as a GraphQL multipart request (the file streams as is: no base64).
 * `files` maps a variable path (e.g. "variables.image.file") to a File; that variable is sent as null.
 * Multipart is a "simple" request to browsers, so Apollo's CSRF prevention wants Apollo-Require-Preflight.
 * @param {string} query
 * @param {Record<string, unknown>} variables
 * @param {Record<string, Blob>} files
 * @param {AbortSignal} [signal]
 */
export function gqlUpload(query, variables, files, signal) {
  const body = new FormData();
  const paths = Object.keys(files);
  body.append('operations', JSON.stringify({ query, variables }));
  body.append('map', JSON.stringify(Object.fromEntries(paths.map((p, i) => [String(i), [p]]))));
  paths.forEach((p, i) => body.append(String(i), files[p]));
  return post({ method: 'POST', headers: { 'apollo-require-preflight': 'true', accept: 'application/json' }, body, signal });
}

/** @param {RequestInit} init */
async function post(init) {
  let res;
  try {
    res = await fetch('/graphql', init);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError('NETWORK', 'The service could not be reached.');
  }
  if (res.status === 413) throw new ApiError('IMAGE_TOO_LARGE', 'The request body is over the service limit.');
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`HTTP_${res.status}`, `The service answered HTTP ${res.status}.`);
  }
  const first = body?.errors?.[0];
  if (first) {
    const { code = 'UNKNOWN', ...details } = first.extensions ?? {};
    throw new ApiError(String(code), String(first.message ?? 'Request failed'), details);
  }
  if (!res.ok || !body?.data) throw new ApiError(`HTTP_${res.status}`, `The service answered HTTP ${res.status}.`);
  return body.data;
}

const size = (bytes) =>
  bytes >= 1024 * 1024 ? `${+(bytes / 1024 / 1024).toFixed(1)} MB` : bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : `${bytes} bytes`;

/** A message a shopper can act on, by extensions.code. @param {ApiError} err */
export function describeError(err) {
  const d = err.details ?? {};
  switch (err.code) {
    case 'IMAGE_TOO_LARGE':
      return typeof d.maxImageBytes === 'number'
        ? `That photo is too large: the limit is ${size(d.maxImageBytes)}. Try a smaller photo or a screenshot of it.`
        : typeof d.maxImagePixels === 'number'
          ? `That photo has too many pixels (the limit is ${+(d.maxImagePixels / 1e6).toFixed(2)} megapixels). Try a smaller version.`
          : 'That photo is too large. Try a smaller photo or a screenshot of it.';
    case 'INVALID_IMAGE':
      return 'That file is not an image we can read. Try a JPEG, PNG, WebP, GIF or AVIF photo.';
    case 'MODEL_UNAVAILABLE':
      return 'Search by photo or text is unavailable right now: the service has no embedding model loaded. You can still browse the catalog.';
    case 'BAD_USER_INPUT':
      if (d.field === 'models')
        return 'Comparing needs at least two models ready on the service: index a second model (docs/compare.md), then try again.';
      return `Please check your search: ${err.message}`;
    case 'NOT_FOUND':
      return 'That product is no longer in the catalog.';
    case 'EMBEDDING_FAILED':
      return 'The search model failed on this input. Please try again or use another photo.';
    case 'NETWORK':
      return 'The service could not be reached. Check that it is running and try again.';
    default:
      return `Something went wrong (${err.code}). Please try again.`;
  }
}
