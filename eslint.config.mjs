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
  ...tseslint.configs.recommended,
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
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // Tool configs share the workspace preset by relative path; they are not package code.
    files: ['**/vitest.config.mjs'],
    rules: { '@nx/enforce-module-boundaries': 'off' },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
  },
);
