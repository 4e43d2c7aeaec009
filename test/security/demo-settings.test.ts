/**
 * Issue 21, finding 13: `npm run demo` honours ADMIN_TOKEN, PGLITE_PSQL_PASSWORD and
 * PGLITE_PSQL_MAX_HOLD_MS like `npm start` (src/demo/settings.ts is all the demo changes).
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { demoDatabase, demoEnvironment } from '../../src/demo/settings.js';

describe('the demo reads the same settings as npm start', () => {
  const env = {
    ADMIN_TOKEN: 'an-operator-admin-token-0123',
    PGLITE_PSQL_PASSWORD: 'an-operator-psql-password',
    PGLITE_PSQL_MAX_HOLD_MS: '5000',
    DATABASE_URL: 'postgres://127.0.0.1:1/ignored',
  };

  it('keeps ADMIN_TOKEN and the psql port settings; only the database is its own', () => {
    const config = loadConfig(demoEnvironment(env));
    expect(config.adminToken).toBe(env.ADMIN_TOKEN);
    const database = demoDatabase(config, 'demo-data/pglite');
    expect(database).toMatchObject({ kind: 'pglite', dataDir: 'demo-data/pglite' });
    expect(database.psql).toMatchObject({ password: env.PGLITE_PSQL_PASSWORD, maxHoldMs: 5000, trust: false });
  });

  it('makes up an admin token (for seeding) only when none is set', () => {
    const config = loadConfig(demoEnvironment({}));
    expect(config.adminToken).toMatch(/^[\w-]{32}$/);
  });
});
