import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Picks the database for integration tests once per run (TEST_DATABASE_URL, a container, or PGlite).
    globalSetup: ['test/support/database-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
