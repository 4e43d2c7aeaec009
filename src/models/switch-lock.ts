/**
 * The lock between the model switch and ingest. An ingest decides which models to embed for (writeTargets)
 * before its transaction, and its products become visible only when it commits; the switch counts the
 * products missing a vector for the new model. Without a lock, a switch could count between an ingest's
 * decision and its commit and activate a model that the committed products have no vector for, and search
 * would never find them. So each ingest transaction takes this lock in shared mode as its first statement
 * and re-reads the active model under it; the switch takes it exclusively, and so waits for the ingests in
 * flight to commit (its count then sees them) and makes the ones that follow see the new active model.
 * A transaction-level advisory lock: released at commit or rollback, nothing to clean up after a crash.
 */
import { sql, type Transaction } from 'kysely';
import type { DB } from '../db/types.js';

/** Any fixed int8; only this service takes it. */
const MODEL_SWITCH_LOCK = 0x7670_73_0001; // "vps", 1

/** For ingest: holds off a model switch until this transaction ends; returns the active model id under the lock. */
export async function holdOffModelSwitch(trx: Transaction<DB>): Promise<string | null> {
  await sql`SELECT pg_advisory_xact_lock_shared(${sql.lit(MODEL_SWITCH_LOCK)})`.execute(trx);
  const active = await trx.selectFrom('embedding_models').select('id').where('is_active', '=', true).executeTakeFirst();
  return active?.id ?? null;
}

/** For the switch: waits for in-flight ingest transactions to end and keeps new ones out until this one ends. */
export async function lockOutIngest(trx: Transaction<DB>): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${sql.lit(MODEL_SWITCH_LOCK)})`.execute(trx);
}
