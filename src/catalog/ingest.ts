/**
 * upsertProducts with photos: bytes in (base64, URL or upload), then thumbnails and vectors, then one
 * transaction that stores metadata, photos and vectors side by side. Network and inference happen
 * before the transaction, so it stays short.
 *
 * A product's photos (migration 0010) are an ordered list. Given again, each new photo is matched to a
 * stored one with the same bytes and the same regions: a match keeps its row, thumbnail and vectors
 * (only its position, label, variant and source change); a photo without a match is stored and embedded
 * (whole and each region); a stored photo left without a match is deleted with its vectors. A product
 * given without photos keeps the ones it has.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type { Kysely, Transaction } from 'kysely';
import { AppError, ErrorCode } from '../errors.js';
import { embeddedImages, upsertEmbeddings, type EmbeddingWrite } from '../db/embeddings.js';
import { deleteImages, imagesOfProducts, insertImages, updateImagePlaces, type ProductImage } from '../db/images.js';
import { getProductsBySkus, setMainImage, upsertProductRows, type Product } from '../db/products.js';
import type { DB, RegionBox } from '../db/types.js';
import type { FetchImageOptions } from '../images/fetch.js';
import { embedPhotos } from '../images/regions.js';
import { loadImageBytes } from '../images/source.js';
import { makeThumbnail, type Thumbnail } from '../images/thumbnail.js';
import type { ImageLimits } from '../images/decode.js';
import type { ModelService } from '../models/service.js';
import { holdOffModelSwitch } from '../models/switch-lock.js';
import { validateProductInputs, type ProductInputLike, type ValidatedImage } from './validate.js';

export interface IngestContext {
  db: Kysely<DB>;
  models: ModelService;
  fetchOptions: FetchImageOptions;
  imageLimits: ImageLimits;
  /** Photos per product (PRODUCT_MAX_IMAGES; default 12). */
  maxImagesPerProduct?: number;
  /** Images fetched and thumbnailed at once per call. */
  concurrency?: number;
}

/** Re-throws an image error with the product (and photo) it belongs to in the message and details. */
function atImage(index: number, image: number | null, err: unknown): never {
  if (err instanceof AppError) {
    const field = image === null ? `products[${index}].image` : `products[${index}].images[${image}]`;
    throw new AppError(err.code, `${field}: ${err.message}`, { ...err.details, field, index }, { cause: err });
  }
  throw err;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sameRegions = (a: readonly RegionBox[], b: readonly RegionBox[]) =>
  a.length === b.length && a.every((r, i) => r.x === b[i]!.x && r.y === b[i]!.y && r.width === b[i]!.width && r.height === b[i]!.height);

/** One given photo, loaded: its bytes and, when it matches a stored photo, that photo. */
interface LoadedImage {
  spec: ValidatedImage;
  bytes: Buffer;
  sha256: string;
  /** The stored photo with the same bytes and regions (kept, with its vectors); null: a new photo. */
  kept: ProductImage | null;
  thumbnail: Thumbnail | null;
}

export async function ingestProducts(ctx: IngestContext, inputs: ProductInputLike[]): Promise<Product[]> {
  const validated = validateProductInputs(inputs, { maxImages: ctx.maxImagesPerProduct ?? 12 });
  const limit = pLimit(ctx.concurrency ?? 4);
  // `image` (the shorthand) is reported as products[i].image, a list as products[i].images[j].
  const imageField = (i: number, j: number) => (inputs[i]!.images != null ? j : null);

  // 1. Image bytes, each checked before anything is stored.
  const loaded: Array<LoadedImage[] | null> = await Promise.all(
    validated.map((v, i) =>
      v.images
        ? Promise.all(
            v.images.map((spec, j) =>
              limit(async () => {
                const bytes = await loadImageBytes(spec.source, ctx.fetchOptions).catch((e) => atImage(i, imageField(i, j), e));
                return { spec, bytes, sha256: sha256(bytes), kept: null, thumbnail: null };
              }),
            ),
          )
        : Promise.resolve(null),
    ),
  );

  // 2. What changed: each given photo matched to a stored one with the same bytes and regions.
  const existing = await getProductsBySkus(
    ctx.db,
    validated.map((v) => v.write.sku),
  );
  const stored = await imagesOfProducts(
    ctx.db,
    [...existing.values()].map((p) => p.id),
  );
  const removed: string[] = [];
  validated.forEach((v, i) => {
    const list = loaded[i];
    if (!list) return;
    const candidates = [...(stored.get(existing.get(v.write.sku)?.id ?? '') ?? [])];
    for (const img of list) {
      const at = candidates.findIndex((c) => c.sha256 === img.sha256 && sameRegions(c.regions, img.spec.regions));
      if (at >= 0) img.kept = candidates.splice(at, 1)[0]!;
    }
    removed.push(...candidates.map((c) => c.id));
  });
  await Promise.all(
    loaded.flatMap((list, i) =>
      (list ?? []).map((img, j) =>
        img.kept
          ? Promise.resolve()
          : limit(async () => {
              img.thumbnail = await makeThumbnail(img.bytes, ctx.imageLimits).catch((e) => atImage(i, imageField(i, j), e));
            }),
      ),
    ),
  );

  // 3 and 4, retried when the active model changed in between (a switch committed after step 3 read the
  // targets: the vectors would be for the old model only). Bounded: a switch is rare, and each retry
  // re-reads the targets, so it converges unless models are switched back and forth continuously.
  for (let attempt = 1; ; attempt++) {
    const plan = await embedForTargets(ctx, loaded, imageField);
    const result = await ctx.db.transaction().execute(async (trx) => {
      // First statement: a model switch waits for this transaction, and cannot slip in between the
      // check below and the commit (src/models/switch-lock.ts).
      const activeNow = await holdOffModelSwitch(trx);
      if (plan.needsVectors && activeNow !== plan.activeId) return null;
      return writeAll(trx, plan.vectors);
    });
    if (result) return result;
    if (attempt >= 3) {
      throw new AppError(ErrorCode.CONFLICT, 'The active model changed while these products were being stored; retry', {
        model: plan.activeId,
      });
    }
  }

  async function writeAll(trx: Transaction<DB>, vectors: PlannedVector[]): Promise<Product[]> {
    const products = await upsertProductRows(
      trx,
      validated.map((v, i) => {
        const main = loaded[i]?.[0];
        return {
          ...v.write,
          imageUrl: main?.spec.source.kind === 'url' ? main.spec.source.url : null,
          imageSha256: main?.sha256 ?? null,
        };
      }),
    );
    // An empty list removes every photo: the product's main image is then none.
    const emptied = products.filter((_, i) => loaded[i]?.length === 0).map((p) => p.id);
    if (emptied.length) await setMainImage(trx, emptied, null);
    await deleteImages(trx, removed);
    const places = loaded.flatMap((list) =>
      (list ?? []).flatMap((img, position) =>
        img.kept ? [{ id: img.kept.id, position, label: img.spec.label, variant: img.spec.variant, sourceUrl: sourceUrl(img) }] : [],
      ),
    );
    await updateImagePlaces(trx, places);
    const fresh = loaded.flatMap((list, i) => (list ?? []).flatMap((img, position) => (img.kept ? [] : [{ i, img, position }])));
    const ids = await insertImages(
      trx,
      fresh.map(({ i, img, position }) => ({
        productId: products[i]!.id,
        position,
        label: img.spec.label,
        variant: img.spec.variant,
        regions: img.spec.regions,
        sha256: img.sha256,
        format: img.thumbnail!.format,
        width: img.thumbnail!.width,
        height: img.thumbnail!.height,
        sourceUrl: sourceUrl(img),
        original: img.bytes,
        thumbnail: img.thumbnail!.webp,
      })),
    );
    const imageIds = new Map<LoadedImage, string>(fresh.map((f, n) => [f.img, ids[n]!]));
    const embeddingRows: EmbeddingWrite[] = vectors.flatMap((v) => {
      const img = loaded[v.index]![v.image]!;
      const imageId = img.kept?.id ?? imageIds.get(img)!;
      return v.embeddings.map((embedding, region) => ({
        productId: products[v.index]!.id,
        modelId: v.modelId,
        embedding,
        imageSha256: img.sha256,
        imageId,
        region,
      }));
    });
    await upsertEmbeddings(trx, embeddingRows);
    return products;
  }
}

const sourceUrl = (img: LoadedImage) => (img.spec.source.kind === 'url' ? img.spec.source.url : null);

interface PlannedVector {
  index: number;
  image: number;
  modelId: string;
  /** The whole photo's vector, then one per region. */
  embeddings: Float32Array[];
}

/**
 * Step 3 of ingestProducts: vectors for every model that wants them (the active one, any model a reindex
 * is building, any kept current), for the new photos and for kept photos that model has not embedded yet.
 * A photo is refused with MODEL_UNAVAILABLE when the active model's files are not loaded in this process:
 * stored without its vector, the product would be invisible to search until someone thought of a
 * reindex. Failing tells the caller now, and a retry succeeds once the model is loaded.
 */
async function embedForTargets(
  ctx: IngestContext,
  loaded: Array<LoadedImage[] | null>,
  imageField: (i: number, j: number) => number | null,
): Promise<{ activeId: string | null; needsVectors: boolean; vectors: PlannedVector[] }> {
  const activeId = await ctx.models.activeModelId();
  const targets = await ctx.models.writeTargets();
  const needsVectors = loaded.some((list) => (list?.length ?? 0) > 0);
  if (needsVectors && activeId && !targets.some((t) => t.id === activeId)) ctx.models.require(activeId); // throws MODEL_UNAVAILABLE
  const keptIds = loaded.flatMap((list) => (list ?? []).flatMap((img) => (img.kept ? [img.kept.id] : [])));
  const vectors: PlannedVector[] = [];
  for (const target of targets) {
    const done = await embeddedImages(ctx.db, target.id, keptIds);
    const todo = loaded.flatMap((list, index) =>
      (list ?? []).flatMap((img, image) => (img.kept && done.has(img.kept.id) ? [] : [{ index, image, img }])),
    );
    if (todo.length === 0) continue;
    const embedded = await embedPhotos(
      target.embedder,
      todo.map((t) => ({ bytes: t.img.bytes, regions: t.img.spec.regions })),
      ctx.imageLimits,
    ).catch((err: unknown) => {
      const bad = err instanceof AppError && typeof err.details?.index === 'number' ? todo[err.details.index] : undefined;
      if (bad) atImage(bad.index, imageField(bad.index, bad.image), err);
      throw err;
    });
    todo.forEach((t, n) => vectors.push({ index: t.index, image: t.image, modelId: target.id, embeddings: embedded[n]! }));
  }
  return { activeId, needsVectors, vectors };
}
