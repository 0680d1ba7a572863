import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Two cores: run files two at a time; each file is isolated in its own process.
    maxWorkers: 2,
    reporters: ['default', './tests/summary-reporter.ts'],
  },
});
