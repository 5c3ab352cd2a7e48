import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

export default tseslint.config(
  { ignores: ['node_modules', 'dist', '.data', 'coverage', '**/*.js', '*.mjs', 'scripts/**'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no Node built-ins.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            'node:*',
            'fs',
            'http',
            'https',
            'crypto',
            'mongodb',
            'koa',
            '@koa/*',
            '@temporalio/client',
            '@temporalio/activity',
            '@temporalio/worker',
            '../src/*',
            '../activities/*',
          ].map((group) => ({
            group: [group],
            message: 'workflow code must stay deterministic and sandbox-safe',
            allowTypeImports: true,
          })),
        },
      ],
    },
  },
  prettier,
);
