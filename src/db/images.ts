/** product_images: original bytes and thumbnail of each product's current image. */
import type { Db } from './types.js';

export interface StoredImageWrite {
  productId: string;
  sha256: string;
  format: string;
  width: number;
  height: number;
  original: Buffer;
  thumbnail: Buffer;
}

export async function upsertProductImages(db: Db, rows: StoredImageWrite[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto('product_images')
    .values(
      rows.map((r) => ({
        product_id: r.productId,
        sha256: r.sha256,
        format: r.format,
        width: r.width,
        height: r.height,
        original: r.original,
        thumbnail: r.thumbnail,
      })),
    )
    .onConflict((oc) =>
      oc.column('product_id').doUpdateSet((eb) => ({
        sha256: eb.ref('excluded.sha256'),
        format: eb.ref('excluded.format'),
        width: eb.ref('excluded.width'),
        height: eb.ref('excluded.height'),
        original: eb.ref('excluded.original'),
        thumbnail: eb.ref('excluded.thumbnail'),
        created_at: eb.fn('now'),
      })),
    )
    .execute();
}

export async function getThumbnail(db: Db, productId: string): Promise<{ thumbnail: Buffer; sha256: string } | null> {
  const row = await db.selectFrom('product_images').select(['thumbnail', 'sha256']).where('product_id', '=', productId).executeTakeFirst();
  return row ? { thumbnail: Buffer.from(row.thumbnail), sha256: row.sha256 } : null;
}
