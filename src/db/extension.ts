/** Checks the pgvector extension of a PostgreSQL server before the service relies on it. */
import { sql, type Kysely } from 'kysely';
import type { DB } from './types.js';

export const MIN_PGVECTOR = [0, 8] as const;

/** Fails with one clear message when the vector extension is missing or older than 0.8. */
export async function checkVectorExtension(db: Kysely<DB>): Promise<string> {
  const installed = await sql<{ extversion: string }>`SELECT extversion FROM pg_extension WHERE extname = 'vector'`.execute(db);
  const available = await sql<{
    default_version: string;
  }>`SELECT default_version FROM pg_available_extensions WHERE name = 'vector'`.execute(db);
  const version = installed.rows[0]?.extversion ?? available.rows[0]?.default_version;
  const how =
    'Install pgvector 0.8 or newer on the database server (Debian/Ubuntu: scripts/provision-postgres.sh; ' +
    'Docker: docker compose up db, which uses the pgvector image), or unset DATABASE_URL to use the embedded database.';
  if (!version) throw new Error(`The PostgreSQL server has no "vector" extension (pgvector). ${how}`);
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < MIN_PGVECTOR[0] || (major === MIN_PGVECTOR[0] && minor < MIN_PGVECTOR[1])) {
    throw new Error(`pgvector ${version} is too old: filtered search needs iterative index scans from 0.8. ${how}`);
  }
  return version;
}
