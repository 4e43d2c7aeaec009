/**
 * upsertProducts with images: bytes in (base64 or URL), then thumbnails and vectors, then one
 * transaction that stores metadata, image and vectors side by side. Network and inference happen
 * before the transaction, so it stays short; unchanged image bytes are neither re-thumbnailed nor
 * re-embedded.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type { Kysely, Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import { embeddedImageHashes, upsertEmbeddings, type EmbeddingWrite } from '../db/embeddings.js';
import { upsertProductImages, type StoredImageWrite } from '../db/images.js';
import { getProductsBySkus, upsertProductRows, type Product } from '../db/products.js';
import type { DB } from '../db/types.js';
import { embedImageBytes } from '../images/embed.js';
import type { FetchImageOptions } from '../images/fetch.js';
import { loadImageBytes } from '../images/source.js';
import { makeThumbnail } from '../images/thumbnail.js';
import type { ImageLimits } from '../images/decode.js';
import type { ModelService } from '../models/service.js';
import { holdOffModelSwitch } from '../models/switch-lock.js';
import { validateProductInputs, type ProductInputLike } from './validate.js';

export interface IngestContext {
  db: Kysely<DB>;
  models: ModelService;
  fetchOptions: FetchImageOptions;
  imageLimits: ImageLimits;
  /** Images fetched and thumbnailed at once per call. */
  concurrency?: number;
}

/** Re-throws an image error with the product it belongs to in the message and details. */
function atProduct(index: number, err: unknown): never {
  if (err instanceof AppError) {
    throw new AppError(
      err.code,
      `products[${index}].image: ${err.message}`,
      { ...err.details, field: `products[${index}].image`, index },
      { cause: err },
    );
  }
  throw err;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export async function ingestProducts(ctx: IngestContext, inputs: ProductInputLike[]): Promise<Product[]> {
  const validated = validateProductInputs(inputs);
  const limit = pLimit(ctx.concurrency ?? 4);

  // 1. Image bytes, each checked before anything is stored.
  const images = await Promise.all(
    validated.map((v, i) =>
      v.image
        ? limit(async () => {
            const bytes = await loadImageBytes(v.image!, ctx.fetchOptions).catch((e) => atProduct(i, e));
            return { bytes, sha256: sha256(bytes) };
          })
        : Promise.resolve(null),
    ),
  );

  // 2. What changed: products whose image bytes differ from what is stored.
  const existing = await getProductsBySkus(
    ctx.db,
    validated.map((v) => v.write.sku),
  );
  const changed = validated.map((v, i) => {
    const img = images[i];
    return img != null && existing.get(v.write.sku)?.imageSha256 !== img.sha256;
  });
  const thumbnails = await Promise.all(
    validated.map((_, i) =>
      changed[i] ? limit(() => makeThumbnail(images[i]!.bytes, ctx.imageLimits).catch((e) => atProduct(i, e))) : Promise.resolve(null),
    ),
  );

  // 3 and 4, retried when the active model changed in between (a switch committed after step 3 read the
  // targets: the vectors would be for the old model only). Bounded: a switch is rare, and each retry
  // re-reads the targets, so it converges unless models are switched back and forth continuously.
  for (let attempt = 1; ; attempt++) {
    const plan = await embedForTargets(ctx, validated, images, existing);
    const stored = await ctx.db.transaction().execute(async (trx) => {
      // First statement: a model switch waits for this transaction, and cannot slip in between the
      // check below and the commit (src/models/switch-lock.ts).
      const activeNow = await holdOffModelSwitch(trx);
      if (plan.needsVectors && activeNow !== plan.activeId) return null;
      return writeAll(trx, plan.vectors);
    });
    if (stored) return stored;
    if (attempt >= 3) {
      throw new AppError(ErrorCode.CONFLICT, 'The active model changed while these products were being stored; retry', {
        model: plan.activeId,
      });
    }
  }

  async function writeAll(trx: Transaction<DB>, vectors: PlannedVector[]): Promise<Product[]> {
    const products = await upsertProductRows(
      trx,
      validated.map((v, i) => ({
        ...v.write,
        imageUrl: v.image?.kind === 'url' ? v.image.url : null,
        imageSha256: images[i]?.sha256 ?? null,
      })),
    );
    const imageRows: StoredImageWrite[] = products.flatMap((p, i) => {
      const t = thumbnails[i];
      return t
        ? [
            {
              productId: p.id,
              sha256: images[i]!.sha256,
              format: t.format,
              width: t.width,
              height: t.height,
              original: images[i]!.bytes,
              thumbnail: t.webp,
            },
          ]
        : [];
    });
    await upsertProductImages(trx, imageRows);
    const embeddingRows: EmbeddingWrite[] = vectors.map((v) => ({
      productId: products[v.index]!.id,
      modelId: v.modelId,
      embedding: v.embedding,
      imageSha256: images[v.index]!.sha256,
    }));
    await upsertEmbeddings(trx, embeddingRows);
    return products;
  }
}

interface PlannedVector {
  index: number;
  modelId: string;
  embedding: Float32Array;
}

/**
 * Step 3 of ingestProducts: vectors for every model that wants them (the active one, and any model a
 * reindex is building), skipping bytes a model already embedded. A product image is refused with
 * MODEL_UNAVAILABLE when the active model's files are not loaded in this process: stored without its
 * vector, the product would be invisible to search until someone thought of a reindex. Failing tells the
 * caller now, and a retry succeeds once the model is loaded (queueing an onlyMissing reindex instead would
 * need a process that has the model, which this one is not, and would hide the problem behind a job).
 */
async function embedForTargets(
  ctx: IngestContext,
  validated: ReturnType<typeof validateProductInputs>,
  images: Array<{ bytes: Buffer; sha256: string } | null>,
  existing: Map<string, Product>,
): Promise<{ activeId: string | null; needsVectors: boolean; vectors: PlannedVector[] }> {
  const activeId = await ctx.models.activeModelId();
  const targets = await ctx.models.writeTargets();
  const needsVectors = images.some((img) => img != null);
  if (needsVectors && activeId && !targets.some((t) => t.id === activeId)) ctx.models.require(activeId); // throws MODEL_UNAVAILABLE
  const existingIds = [...existing.values()].map((p) => p.id);
  const vectors: PlannedVector[] = [];
  for (const target of targets) {
    const hashes = await embeddedImageHashes(ctx.db, target.id, existingIds);
    const todo = validated.flatMap((v, i) => {
      const img = images[i];
      if (!img) return [];
      const stored = existing.get(v.write.sku);
      return stored && hashes.get(stored.id) === img.sha256 ? [] : [i];
    });
    if (todo.length === 0) continue;
    const embedded = await embedImageBytes(
      target.embedder,
      todo.map((i) => images[i]!.bytes),
      ctx.imageLimits,
    ).catch((err: unknown) => {
      const index = err instanceof AppError && typeof err.details?.index === 'number' ? todo[err.details.index] : undefined;
      if (index !== undefined) atProduct(index, err);
      throw err;
    });
    todo.forEach((index, j) => vectors.push({ index, modelId: target.id, embedding: embedded[j]! }));
  }
  return { activeId, needsVectors, vectors };
}
