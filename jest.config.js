/**
 * Three projects: `unit` needs nothing running; `integration` and `load` get a real Temporal dev
 * server and a real FerretDB from their global setup (their addresses arrive in process.env).
 * Jest runs a project's global setup only when one of its tests is selected.
 *
 * `load` holds the files that saturate the machine on purpose or judge timing and memory under
 * load (overload, fuzzing, the schemathesis contract, two worker processes at the cap, Ctrl-C on
 * the dev stack). `npm test` (tools/test.ts) runs them after the others, each in its own Jest run:
 * beside another heavy file on 2 cores their numbers measure the neighbour, not the service.
 */
const swc = ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' } }];
const common = { testEnvironment: 'node', transform: { '^.+\\.ts$': swc }, moduleFileExtensions: ['ts', 'js', 'json'] };
const servers = {
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
};
const LOAD = ['overload', 'fuzz', 'contract', 'multi-worker', 'faults', 'power-cut', 'dev-shutdown'].map(
  (name) => `<rootDir>/test/integration/${name}.test.ts`,
);

module.exports = {
  // Two workers: the machine has two cores and the servers need some of them.
  maxWorkers: 2,
  // Integration tests wait for real servers; unit tests finish long before this.
  testTimeout: 120_000,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      ...servers,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      testPathIgnorePatterns: LOAD,
    },
    { ...common, ...servers, displayName: 'load', testMatch: LOAD },
  ],
};
