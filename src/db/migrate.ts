/** Kysely's Migrator over the numbered files in migrations/ (repository root). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileMigrationProvider, Migrator, type Kysely, type MigrationResultSet } from 'kysely';
import type { DB } from './types.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export function createMigrator(db: Kysely<DB>): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    migrationTableName: 'schema_migrations',
    migrationLockTableName: 'schema_migrations_lock',
  });
}

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    const err = result.error instanceof Error ? result.error : new Error(String(result.error));
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${err.message}`, { cause: err });
  }
  return (result.results ?? []).map((r) => r.migrationName);
}

export async function migrateToLatest(db: Kysely<DB>): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateToLatest());
}

export async function migrateDown(db: Kysely<DB>): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateDown());
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | null;
}

export async function migrationStatus(db: Kysely<DB>): Promise<MigrationStatus[]> {
  const all = await createMigrator(db).getMigrations();
  return all.map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
}

export async function pendingMigrations(db: Kysely<DB>): Promise<string[]> {
  return (await migrationStatus(db)).filter((m) => !m.executedAt).map((m) => m.name);
}
