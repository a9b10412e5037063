// Lint for the whole workspace. The module-boundary rule encodes DESIGN.md's dependency graph: a package
// importing one it may not use fails `npm test`, not a review.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

const leaves = ['pki', 'transport', 'policy', 'audit', 'filters-dp', 'filters-he', 'aggregator', 'secagg', 'cc-attest', 'tfjs'];
const tag = (name) => `pkg:${name}`;

export const depConstraints = [
  { sourceTag: tag('core'), onlyDependOnLibsWithTags: [tag('core')] },
  ...leaves.map((leaf) => ({ sourceTag: tag(leaf), onlyDependOnLibsWithTags: [tag('core')] })),
  { sourceTag: tag('auth'), onlyDependOnLibsWithTags: [tag('core'), tag('pki')] },
  {
    sourceTag: tag('runtime'),
    onlyDependOnLibsWithTags: [tag('core'), tag('auth'), ...leaves.filter((l) => l !== 'tfjs').map(tag)],
  },
  // The CLI is the top composing layer: it also exposes the leaf packages' own commands (policy check,
  // audit verify, attest verify), so it may use every library but nothing may use it.
  { sourceTag: tag('cli'), onlyDependOnLibsWithTags: [tag('core'), tag('auth'), tag('runtime'), ...leaves.map(tag)] },
  { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['*'] },
  { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['*'] },
];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/out-tsc/**', 'reports/**', '.nx/**', '**/*.d.ts'] },
  js.configs.recommended,
  ...nx.configs['flat/base'],
  ...tseslint.configs.recommendedTypeChecked,
  {
    // Type information for every TypeScript file: each file is checked against the tsconfig that includes it
    // (packages' lib and spec configs, e2e, tools). Files that no tsconfig includes get a default project;
    // list them here (a glob may not match a file some tsconfig already includes).
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['packages/filters-dp/conformance/*.ts', 'vitest.conformance.config.ts'],
          defaultProject: 'tsconfig.base.json',
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 32,
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    files: ['**/*.ts', '**/*.mts', '**/*.mjs', '**/*.js'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        { enforceBuildableLibDependency: false, allow: [], depConstraints, banTransitiveDependencies: true },
      ],
    },
  },
  {
    files: ['**/*.ts', '**/*.mts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // A promise nobody awaits is a lost error in a long-running server.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // recommendedTypeChecked rules that found existing code when type-aware lint landed (hits at eff1d78 in
      // parentheses). Off until each package's owner has cleaned up; turn one on here, not per file.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off', // (88) `x!` / `as T` that TS already knows
      '@typescript-eslint/require-await': 'off', // (47) async functions implementing a Promise-returning contract
      '@typescript-eslint/no-unsafe-assignment': 'off', // (34) mostly JSON.parse in tests
      '@typescript-eslint/no-unsafe-member-access': 'off', // (48) idem
      '@typescript-eslint/no-unsafe-argument': 'off', // (29) idem
      '@typescript-eslint/no-unsafe-call': 'off', // (2) tests
      '@typescript-eslint/no-unsafe-return': 'off', // (2) tests
      '@typescript-eslint/no-base-to-string': 'off', // (12) template strings of `unknown` metadata values
      '@typescript-eslint/no-redundant-type-constituents': 'off', // (4) `unknown | X` unions
      '@typescript-eslint/prefer-promise-reject-errors': 'off', // (7) runtime, being rewritten
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Use named exports (house style).' },
        {
          selector: "CallExpression[callee.object.name='Math'][callee.property.name='random']",
          message: 'Math.random is not a CSPRNG: use node:crypto.',
        },
      ],
    },
  },
  {
    files: ['**/test/**/*.ts', '**/conformance/**/*.ts', 'e2e/**/*.ts', 'tools/**/*.ts'],
    rules: {
      // A property test draws the same inputs on every run: CI runs once per stop, and a counterexample drawn at
      // random there (1e-134 beside 5e-40, outside what exact-sum.ts sums exactly) stopped a whole landing. To
      // explore, raise numRuns and drop the seed locally (docs/contributing.md, Tests).
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.object.name='fc'][callee.property.name='assert'][arguments.length=1]",
          message: 'Give fc.assert a fixed seed: fc.assert(property, { seed: N }).',
        },
        {
          selector: "CallExpression[callee.object.name='fc'][callee.property.name='assert'] > ObjectExpression.arguments:not(:has(Property[key.name='seed']))",
          message: 'Give fc.assert a fixed seed: { numRuns, seed: N }.',
        },
      ],
    },
  },
  {
    // Tool configs share the workspace preset by relative path, and the docs test runs the repository's
    // snippet checker (tools/scripts/doc-snippets.mjs): they are not package code.
    files: ['**/vitest.config.mjs', '**/vitest.e2e.config.mjs', 'e2e/test/doc-snippets.e2e.test.ts'],
    rules: { '@nx/enforce-module-boundaries': 'off' },
  },
  {
    // Plain JavaScript (tool configs, scripts, docs examples) is linted without type information.
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
  },
);
