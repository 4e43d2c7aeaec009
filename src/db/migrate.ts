/** Kysely's Migrator over the numbered files in migrations/ (repository root). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import type { DB } from './types.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Loads migrations/NNNN_name.ts with this module's own import(), so whatever runs the app
 * (tsx, vitest, compiled JS) also loads the migrations; Kysely's FileMigrationProvider imports
 * from inside node_modules, where TypeScript files are not transformed.
 */
class MigrationFolder implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await fs.readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[a-z0-9_]+\.(ts|js)$/.test(f)).sort();
    const entries = await Promise.all(
      files.map(
        async (f) => [f.replace(/\.(ts|js)$/, ''), (await import(pathToFileURL(path.join(MIGRATIONS_DIR, f)).href)) as Migration] as const,
      ),
    );
    return Object.fromEntries(entries);
  }
}

export function createMigrator(db: Kysely<DB>): Migrator {
  return new Migrator({
    db,
    provider: new MigrationFolder(),
    migrationTableName: 'schema_migrations',
    migrationLockTableName: 'schema_migrations_lock',
  });
}

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    const err = result.error instanceof Error ? result.error : new Error(JSON.stringify(result.error));
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
