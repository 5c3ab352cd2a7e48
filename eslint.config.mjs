import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import importX from 'eslint-plugin-import-x';

/**
 * The layout's boundaries, enforced (ARCHITECTURE.md, "Who decides what"):
 * - workflow code (`*.workflow.ts` and the pure modules it runs: the lifecycle machine, the
 *   contracts, the activity options) stays deterministic: no Node built-in, no I/O library, no
 *   Temporal client or activity package, and any other project module as a type import only;
 * - the Temporal client is imported only by the launch modules and the entry points;
 * - the MongoDB driver only by the store adapters and the entry points;
 * - no import cycles anywhere.
 * test/unit/lint-boundaries.test.ts lints deliberate violations to prove each rule bites.
 */
const NODE_BUILTINS = builtinModules.flatMap((m) => [m, `node:${m}`, `${m}/*`]);

/** Files that may hold a Temporal client: the launchers and the composition roots. */
const TEMPORAL_CLIENT_OWNERS = [
  'src/launch-deps.ts',
  'src/lifecycle/launch.ts',
  'src/sending/launch.ts',
  'src/relay/launch.ts',
  'src/runtime.ts',
  'src/worker.ts',
  'src/*-main.ts',
];
/** Files that may import the MongoDB driver: the store adapters and the runtime that connects it. */
const MONGODB_OWNERS = ['src/adapters/store/**', 'src/**/*.store.ts', 'src/runtime.ts'];
/** Code that runs in Temporal's workflow sandbox, and the only project modules it may import as values. */
const WORKFLOW_CODE = [
  'src/**/*.workflow.ts',
  'src/workflows.ts',
  'src/lifecycle/machine.ts',
  'src/contracts.ts',
  'src/activity-options.ts',
];
const WORKFLOW_VALUE_IMPORTS =
  /^\.{1,2}\/(?!(?:\.\.\/)*(?:[\w-]+\/)*(?:[\w-]+\.workflow|machine|contracts|activity-options)$)/;

const restricted = (patterns, message, allowTypeImports = false) =>
  patterns.map((group) => ({ group: [group], message, allowTypeImports }));

export default tseslint.config(
  { ignores: ['node_modules', 'dist', '.data', 'coverage', '**/*.js', '*.mjs', 'scripts/**'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [importX.createNodeResolver({ extensions: ['.ts', '.js'] })],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/extensions': ['.ts', '.js'],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },
  {
    // Product code outside the owners above: no Temporal client, no MongoDB driver.
    files: ['src/**/*.ts'],
    ignores: [...TEMPORAL_CLIENT_OWNERS, ...MONGODB_OWNERS],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...restricted(
              ['@temporalio/client'],
              'reach Temporal through src/lifecycle/launch.ts or src/sending/launch.ts',
            ),
            ...restricted(
              ['mongodb'],
              'touch collections only through the store modules (*.store.ts, src/adapters/store/)',
            ),
          ],
        },
      ],
    },
  },
  {
    files: TEMPORAL_CLIENT_OWNERS.filter((f) => f !== 'src/runtime.ts'),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: restricted(
            ['mongodb'],
            'touch collections only through the store modules (*.store.ts, src/adapters/store/)',
          ),
        },
      ],
    },
  },
  {
    files: MONGODB_OWNERS.filter((f) => f !== 'src/runtime.ts'),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: restricted(
            ['@temporalio/client'],
            'reach Temporal through src/lifecycle/launch.ts or src/sending/launch.ts',
          ),
        },
      ],
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no Node built-ins.
    files: WORKFLOW_CODE,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...restricted(
              [
                ...NODE_BUILTINS,
                'mongodb',
                'koa',
                '@koa/*',
                'pino',
                '@temporalio/client',
                '@temporalio/activity',
                '@temporalio/worker',
              ],
              'workflow code must stay deterministic and sandbox-safe',
            ),
            {
              regex: WORKFLOW_VALUE_IMPORTS.source,
              message:
                'workflow code imports other workflow code, the machine, the contracts and the activity options; anything else as a type only',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  prettier,
);
