/** Shared between the global setup and test files (kept free of database drivers, so the setup loads fast). */
export const TEMPLATE_DB = 'vps_test_template';

/** pglite: `template` is a file holding a migrated data directory (PGlite's dumpDataDir), made once per run. */
export type TestDbInfo = { kind: 'pglite'; template: string } | { kind: 'postgres'; adminUrl: string };
