/**
 * What `npm run demo` changes in the settings `npm start` reads, and nothing more: the demo always runs
 * on its own embedded database (DATABASE_URL is ignored) under DEMO_DATA_DIR, and needs an admin token to
 * seed its catalog (a random one unless ADMIN_TOKEN is set). Everything else, ADMIN_TOKEN and the psql
 * port's settings (PGLITE_PSQL_PASSWORD, PGLITE_PSQL_MAX_HOLD_MS, …) included, is as `npm start` reads it.
 */
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config, type PgliteSettings } from '../config.js';

/** The environment the demo's configuration is loaded from. */
export function demoEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {
    ...env,
    ADMIN_TOKEN: env.ADMIN_TOKEN || randomBytes(24).toString('base64url'),
    DATA_DIR: env.DEMO_DATA_DIR ?? './data/demo',
  };
  delete out.DATABASE_URL;
  return out;
}

/**
 * The demo's database: the configured embedded one (its psql port settings kept), in `pgliteDir`; a config
 * with DATABASE_URL gets the embedded database's defaults (the schema's, written once there).
 */
export function demoDatabase(config: Config, pgliteDir: string): PgliteSettings {
  const embedded = config.database.kind === 'pglite' ? config.database : loadConfig({}).database;
  if (embedded.kind !== 'pglite') throw new Error('without DATABASE_URL the database is the embedded one');
  return { ...embedded, dataDir: pgliteDir };
}
