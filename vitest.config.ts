import os from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Picks the database for integration tests once per run (TEST_DATABASE_URL, a container, or PGlite).
    globalSetup: ['test/support/database-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One test file per core, not vitest's default of one fewer: most files wait on a database, a child
    // process or a timer more than they compute. On the 2-core CI machine the suite on PostgreSQL took
    // 231 s with 2 workers against 393 s with 1, the PGlite files 155 s against 238 s (both green).
    maxWorkers: Math.max(2, os.availableParallelism()),
  },
});
