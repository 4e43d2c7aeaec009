// Model ids may name a file variant, e.g. onnx-community/siglip2-base-patch16-224-ONNX@fp16, so that
// two variants of one model can coexist in the registry: allow '@' in embedding_models.id.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE embedding_models DROP CONSTRAINT embedding_models_id_check`.execute(db);
  await sql`ALTER TABLE embedding_models ADD CONSTRAINT embedding_models_id_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._/@-]{0,127}$')`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE embedding_models DROP CONSTRAINT embedding_models_id_check`.execute(db);
  await sql`ALTER TABLE embedding_models ADD CONSTRAINT embedding_models_id_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$')`.execute(
    db,
  );
}
