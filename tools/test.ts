/**
 * `npm test` after the binaries are in place: Jest in two phases.
 *   1. `unit` and `integration`, two files at a time;
 *   2. `load` (see jest.config.js), one file at a time, with the machine to itself.
 * Both phases run even when the first fails, so one run reports everything; the exit code is
 * non-zero when either failed. Arguments (`npm test -- test/unit/x.test.ts`) run Jest once with them.
 */
import { spawnSync } from 'node:child_process';

const jest = require.resolve('jest/bin/jest');

function run(args: string[]): number {
  const r = spawnSync(process.execPath, [jest, ...args], { stdio: 'inherit' });
  return r.status ?? 1;
}

const args = process.argv.slice(2);
if (args.length > 0) process.exit(run(args));

const phases = [
  ['--selectProjects', 'unit', 'integration'],
  ['--selectProjects', 'load', '--runInBand'],
];
const codes = phases.map((phase) => run(phase));
process.exit(codes.some((c) => c !== 0) ? 1 : 0);
