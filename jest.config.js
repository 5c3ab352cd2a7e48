/**
 * Two projects: `unit` needs nothing running; `integration` gets a real Temporal dev server and a
 * real FerretDB from its global setup (their addresses arrive in process.env). Jest runs a
 * project's global setup only when one of its tests is selected. Two workers: the machine has two
 * cores and the servers need some of them.
 */
const swc = ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' } }];
const common = { testEnvironment: 'node', transform: { '^.+\\.ts$': swc }, moduleFileExtensions: ['ts', 'js', 'json'] };

module.exports = {
  maxWorkers: 2,
  // Integration tests wait for real servers; unit tests finish long before this.
  testTimeout: 120_000,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/global-setup.ts',
      globalTeardown: '<rootDir>/test/global-teardown.ts',
    },
  ],
};
