// A model can be marked to be kept current: ingest embeds new and changed images for it although it is
// neither active nor being built, so a second model stays comparable (compareModels, model: on search)
// without a reindex after every catalog change.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE embedding_models ADD COLUMN keep_current boolean NOT NULL DEFAULT false`.execute(db);
  await sql`COMMENT ON COLUMN embedding_models.keep_current IS 'true: ingest embeds new and changed product images for this model although it is neither active nor being built (kept comparable, e.g. for compareModels)'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE embedding_models DROP COLUMN keep_current`.execute(db);
}
