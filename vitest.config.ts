import { defineConfig } from 'vitest/config';

// Tests create real network namespaces, TUN devices and etcd servers on a 2-core machine:
// files run one at a time so they do not starve each other (there are no timing thresholds,
// only generous timeouts that catch hangs). The JSON report feeds .ci/run's summary line.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default', 'json'],
    outputFile: { json: 'test-artifacts/vitest.json' },
  },
});
