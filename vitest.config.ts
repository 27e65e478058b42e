import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Integration tests start real processes; two cores, so keep parallelism modest.
    maxWorkers: 3,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'packages/*/src/**/*.test.ts'],
          // Pure logic in one process per worker: a fresh one per file spent more CPU loading
          // vitest and the modules (~18 s on two cores) than the tests themselves.
          isolate: false,
        },
      },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'] } },
    ],
  },
});
