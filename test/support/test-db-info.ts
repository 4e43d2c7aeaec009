/** Shared between the global setup and test files (kept free of database drivers, so the setup loads fast). */
export const TEMPLATE_DB = 'vps_test_template';

export type TestDbInfo = { kind: 'pglite' } | { kind: 'postgres'; adminUrl: string };
