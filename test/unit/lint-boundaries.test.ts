import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * The lint config guards the layout (eslint.config.mjs): each case lints a deliberate violation,
 * as the text of a real file of the repository, and expects the rule that forbids it to fire.
 */
const root = path.resolve(__dirname, '..', '..');

// ESLint loads its (ESM) config with a dynamic import, which Jest's sandbox cannot do: the cases
// are linted by one plain Node process, started on first use.
// The boundary rules need no type information, so the cases are parsed from their text alone. With
// the type-aware program on, typescript-eslint keeps one TypeScript program per process, fed from
// the files on disk and the case text; once in CI the first case came back without its violation,
// and that program is the only state the cases share.
const LINTER = `
import { ESLint } from 'eslint';
const cases = JSON.parse(process.env.LINT_CASES);
const eslint = new ESLint({
  cwd: process.cwd(),
  overrideConfig: {
    languageOptions: { parserOptions: { project: null, projectService: false } },
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
});
const out = [];
for (const c of cases) {
  const [r] = await eslint.lintText(c.code, { filePath: c.file });
  out.push((r?.messages ?? []).map((m) => m.ruleId + ': ' + m.message));
}
process.stdout.write(JSON.stringify(out));
`;
const pending: { file: string; code: string; resolve: (m: string[]) => void }[] = [];
let scheduled: NodeJS.Timeout | undefined;

/** Queues a case; every case queued before the first `await` is linted in one process. */
function ruleIdsFor(file: string, code: string): Promise<string[]> {
  return new Promise((resolve) => {
    pending.push({ file: path.join(root, file), code, resolve });
    scheduled ??= setTimeout(runBatch, 0);
  });
}

function runBatch(): void {
  const batch = pending.splice(0);
  scheduled = undefined;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', LINTER], {
    cwd: root,
    env: { ...process.env, LINT_CASES: JSON.stringify(batch.map(({ file, code }) => ({ file, code }))) },
    encoding: 'utf8',
  });
  (JSON.parse(out) as string[][]).forEach((m, i) => batch[i]!.resolve(m));
}

const use = 'export const x = [readFileSync, Client, MongoClient];\n';

interface Case {
  title: string;
  file: string;
  code: string;
  /** A message that must be reported (rule id prefix or text), or none of that rule when `absent`. */
  expect: string;
  absent?: boolean;
}

const inWorkflow = (title: string, line: string): Case => ({
  title: `refuses ${title} in workflow code`,
  file: 'src/sending/send.workflow.ts',
  code: `${line}\n${use}`,
  expect: 'no-restricted-imports',
});

const CASES: Case[] = [
  inWorkflow('node:fs', "import { readFileSync } from 'node:fs';"),
  inWorkflow('fs (without the node: prefix)', "import { readFileSync } from 'fs';"),
  inWorkflow('a built-in on no hand list (worker_threads)', "import { Worker as readFileSync } from 'worker_threads';"),
  inWorkflow('the Temporal client', "import { Client } from '@temporalio/client';"),
  inWorkflow('the MongoDB driver', "import { MongoClient } from 'mongodb';"),
  inWorkflow('activity code as a value', "import { createActivities as readFileSync } from '../activities';"),
  inWorkflow("its own flow's Node code as a value", "import { gateVerdict as readFileSync } from './admission';"),
  inWorkflow('a store module as a value', "import { loadWaba as readFileSync } from '../lifecycle/wabas.store';"),
  {
    title: 'allows type-only imports of activities in workflow code',
    file: 'src/sending/send.workflow.ts',
    code: "import type { Activities } from '../activities';\nexport type A = Activities;\n",
    expect: 'no-restricted-imports',
    absent: true,
  },
  {
    title: 'allows workflow code to import the contracts, the machine and other workflow code as values',
    file: 'src/lifecycle/lifecycle.workflow.ts',
    code:
      "import { stateQuery } from '../contracts';\nimport { transition } from './machine';\n" +
      "import { alertInBackground } from '../alerts/alerts.workflow';\nexport const x = [stateQuery, transition, alertInBackground];\n",
    expect: 'no-restricted-imports',
    absent: true,
  },
  {
    title: 'refuses the Temporal client outside the launch modules and entry points',
    file: 'src/ops/api.ts',
    code: "import { Client } from '@temporalio/client';\nexport const c = Client;\n",
    expect: 'src/lifecycle/launch.ts',
  },
  {
    title: 'allows the Temporal client in a launch module',
    file: 'src/sending/launch.ts',
    code: "import { Client } from '@temporalio/client';\nexport const c = Client;\n",
    expect: 'no-restricted-imports',
    absent: true,
  },
  {
    title: 'refuses the MongoDB driver outside the store modules',
    file: 'src/sending/send.activities.ts',
    code: "import { MongoClient } from 'mongodb';\nexport const m = MongoClient;\n",
    expect: 'touch collections only through the store modules',
  },
  {
    title: "allows the MongoDB driver in a flow's store module",
    file: 'src/sending/queue.store.ts',
    code: "import { MongoClient } from 'mongodb';\nexport const m = MongoClient;\n",
    expect: 'no-restricted-imports',
    absent: true,
  },
  {
    // admission.ts imports contracts.ts; a value import of admission back into it closes a cycle.
    title: 'refuses an import cycle',
    file: 'src/contracts.ts',
    code: "import { gateVerdict } from './sending/admission';\nexport const g = gateVerdict;\n",
    expect: 'import-x/no-cycle',
  },
];

describe('lint keeps the layout', () => {
  let results: string[][] = [];
  beforeAll(async () => {
    results = await Promise.all(CASES.map((c) => ruleIdsFor(c.file, c.code)));
  }, 120_000);

  it.each(CASES.map((c, i) => [c.title, i] as const))('%s', (_title, i) => {
    const c = CASES[i]!;
    const hits = results[i]!.filter((m) => m.includes(c.expect));
    // On failure the received messages are printed whole.
    if (c.absent) expect(hits).toEqual([]);
    else expect(results[i]).toContainEqual(expect.stringContaining(c.expect));
  });
});
