/**
 * `npm test` after the binaries are in place: Jest in two phases.
 *   1. `unit` and `integration`, two files at a time;
 *   2. each `load` file (see jest.config.js) alone, in its own Jest run, so it has the machine and
 *      fresh test servers to itself (a file that stalls, kills or overloads servers cannot reach
 *      the next one).
 * Every run happens even when an earlier one failed, so one run reports everything; the exit code
 * is non-zero when any failed, and the last lines name every failed test (CI logs keep the tail).
 * Arguments (`npm test -- test/unit/x.test.ts`) run Jest once with them.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const jest = require.resolve('jest/bin/jest');
const root = path.join(__dirname, '..');
const config = createRequire(__filename)(path.join(root, 'jest.config.js')) as {
  projects: { displayName: string; testMatch: string[] }[];
};

interface JestJson {
  testResults: {
    name: string;
    message: string;
    assertionResults: { status: string; fullName: string; failureMessages: string[] }[];
  }[];
}

const reports = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-test-'));
const failures: string[] = [];
let runs = 0;

/** One Jest run; its failed tests (or a file that failed to run) are kept for the summary. */
function run(args: string[]): number {
  const json = path.join(reports, `run-${++runs}.json`);
  const r = spawnSync(process.execPath, [jest, ...args, '--json', `--outputFile=${json}`], {
    stdio: 'inherit',
    cwd: root,
  });
  const code = r.status ?? 1;
  if (code !== 0) failures.push(...failedTests(json, args));
  return code;
}

function failedTests(json: string, args: string[]): string[] {
  let out: JestJson;
  try {
    out = JSON.parse(fs.readFileSync(json, 'utf8')) as JestJson;
  } catch {
    return [`jest ${args.join(' ')}: no report (the run itself failed)`];
  }
  // The first lines of the failure, without colours or stack: enough to tell one failure from another.
  const summary = (m: string | undefined) =>
    (m ?? '')
      .replace(/\u001b\[[0-9;]*m/g, '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('at '))
      .slice(0, 6)
      .join(' | ');
  return out.testResults.flatMap((file) => {
    const name = path.relative(root, file.name);
    const failed = file.assertionResults.filter((a) => a.status === 'failed');
    if (failed.length === 0) return file.message ? [`${name}: ${summary(file.message)}`] : [];
    return failed.map((a) => `${name} › ${a.fullName}: ${summary(a.failureMessages[0])}`);
  });
}

function finish(codes: number[]): never {
  fs.rmSync(reports, { recursive: true, force: true });
  for (const f of failures) process.stdout.write(`\nFAILED ${f.slice(0, 600)}`);
  const failed = codes.filter((c) => c !== 0).length;
  process.stdout.write(`\nnpm test: ${codes.length} Jest runs, ${failed} failed\n`);
  process.exit(failed > 0 ? 1 : 0);
}

const args = process.argv.slice(2);
if (args.length > 0) finish([run(args)]);

const loadFiles = config.projects
  .find((p) => p.displayName === 'load')!
  .testMatch.map((m) => m.replace('<rootDir>', root));
const codes = [run(['--selectProjects', 'unit', 'integration'])];
for (const file of loadFiles) codes.push(run(['--selectProjects', 'load', '--runInBand', file]));
finish(codes);
