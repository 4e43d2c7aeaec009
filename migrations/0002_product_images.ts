// Product images as ingested, and their thumbnails.
// Originals are kept so that re-embedding the catalog for a new model (reindex) needs no re-upload and
// does not depend on image URLs still working; thumbnails serve the storefront without re-downloads.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE product_images (
      product_id    bigint PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
      sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
      format        text NOT NULL,
      width         integer NOT NULL CHECK (width > 0),
      height        integer NOT NULL CHECK (height > 0),
      original      bytea NOT NULL,
      thumbnail     bytea NOT NULL,
      created_at    timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  const comments: Array<[string, string]> = [
    ['TABLE product_images', 'The current image of each product: original bytes (for re-embedding) and a thumbnail (for display).'],
    ['COLUMN product_images.product_id', 'The product this image belongs to; one image per product.'],
    ['COLUMN product_images.sha256', 'Hex SHA-256 of original; equals products.image_sha256.'],
    ['COLUMN product_images.format', 'Image format detected from the bytes (jpeg, png, webp, gif, tiff, avif, heif).'],
    ['COLUMN product_images.width', 'Width in pixels of the original, as its header declares it.'],
    ['COLUMN product_images.height', 'Height in pixels of the original, as its header declares it.'],
    ['COLUMN product_images.original', 'The image bytes as ingested (base64 upload or fetched URL).'],
    ['COLUMN product_images.thumbnail', 'WebP thumbnail, longest side 256 px; served at /images/<product id>/thumbnail.webp.'],
    ['COLUMN product_images.created_at', 'When this image was stored.'],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE product_images`.execute(db);
}
