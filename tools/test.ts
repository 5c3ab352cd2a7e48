/**
 * `npm test` after the binaries are in place: Jest in two phases.
 *   1. `unit` and `integration`, two files at a time;
 *   2. each `load` file (see jest.config.js) alone, in its own Jest run, so it has the machine and
 *      fresh test servers to itself (a file that stalls, kills or overloads servers cannot reach
 *      the next one).
 * Every run happens even when an earlier one failed, so one run reports everything; the exit code
 * is non-zero when any failed. Arguments (`npm test -- test/unit/x.test.ts`) run Jest once with them.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const jest = require.resolve('jest/bin/jest');
const root = path.join(__dirname, '..');
const config = createRequire(__filename)(path.join(root, 'jest.config.js')) as {
  projects: { displayName: string; testMatch: string[] }[];
};

function run(args: string[]): number {
  const r = spawnSync(process.execPath, [jest, ...args], { stdio: 'inherit', cwd: root });
  return r.status ?? 1;
}

const args = process.argv.slice(2);
if (args.length > 0) process.exit(run(args));

const loadFiles = config.projects
  .find((p) => p.displayName === 'load')!
  .testMatch.map((m) => m.replace('<rootDir>', root));
const codes = [run(['--selectProjects', 'unit', 'integration'])];
for (const file of loadFiles) codes.push(run(['--selectProjects', 'load', '--runInBand', file]));
const failed = codes.filter((c) => c !== 0).length;
process.stdout.write(`\nnpm test: ${codes.length} Jest runs, ${failed} failed\n`);
process.exit(failed > 0 ? 1 : 0);
