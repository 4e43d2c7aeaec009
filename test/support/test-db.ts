/** Gives each test file a database of its own on the backend the global setup chose. */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connect.js';

import { TEMPLATE_DB } from './test-db-info.js';

export interface TestDatabase extends Database {
  /** A connection URL for this test's database (PostgreSQL only). */
  url: string | null;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const info = inject('testDb');
  if (info.kind === 'pglite') {
    // In memory, from the migrated template the global setup dumped (test/support/database-setup.ts).
    const loadDataDir = new Blob([await readFile(info.template)]);
    const database = await openDatabase({ kind: 'pglite', loadDataDir });
    return { ...database, url: null };
  }
  const name = `vps_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: info.adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  const url = new URL(info.adminUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ kind: 'postgres', url: url.toString(), poolSize: 10 });
  return {
    ...database,
    url: url.toString(),
    close: async () => {
      await database.close();
      const c = new pg.Client({ connectionString: info.adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => c.end());
    },
  };
}
