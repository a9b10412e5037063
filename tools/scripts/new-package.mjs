#!/usr/bin/env node
// Scaffolds packages/<name> as the house style wants it (see docs/contributing.md):
//   node tools/scripts/new-package.mjs <name> "<one-line description>"
// Then add the package's tag to eslint.config.mjs's depConstraints and run `npx nx sync`.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [name, description] = process.argv.slice(2);
if (!name || !description || !/^[a-z][a-z0-9-]*$/.test(name)) {
  console.error('usage: node tools/scripts/new-package.mjs <name> "<description>"');
  process.exit(2);
}
const dir = join('packages', name);
if (existsSync(dir)) {
  console.error(`${dir} already exists`);
  process.exit(1);
}
const json = (value) => `${JSON.stringify(value, null, 2)}\n`;
const write = (file, text) => writeFileSync(join(dir, file), text);
mkdirSync(join(dir, 'src'), { recursive: true });
mkdirSync(join(dir, 'test'), { recursive: true });

write(
  'package.json',
  json({
    name: `@flare/${name}`,
    version: '0.1.0',
    description,
    license: 'Apache-2.0',
    keywords: ['federated-learning', 'nvflare', 'flare', 'security'],
    homepage: `https://github.com/flare-ts/flare-ts/tree/main/packages/${name}#readme`,
    bugs: { url: 'https://github.com/flare-ts/flare-ts/issues' },
    repository: { type: 'git', url: 'git+https://github.com/flare-ts/flare-ts.git', directory: `packages/${name}` },
    type: 'module',
    sideEffects: false,
    engines: { node: '>=20' },
    main: './dist/index.js',
    types: './dist/index.d.ts',
    exports: {
      '.': { types: './dist/index.d.ts', default: './dist/index.js' },
      './package.json': './package.json',
    },
    // src ships so that the source maps resolve for users
    files: ['dist', 'src', '!dist/**/*.tsbuildinfo'],
    publishConfig: { access: 'public' },
    dependencies: {},
    nx: { tags: [`pkg:${name}`] },
  }),
);
write(
  'tsconfig.json',
  json({
    extends: '../../tsconfig.base.json',
    files: [],
    include: [],
    references: [{ path: './tsconfig.lib.json' }, { path: './tsconfig.spec.json' }],
  }),
);
write(
  'tsconfig.lib.json',
  json({
    extends: '../../tsconfig.base.json',
    compilerOptions: { rootDir: 'src', outDir: 'dist', tsBuildInfoFile: 'dist/tsconfig.lib.tsbuildinfo' },
    include: ['src/**/*.ts'],
    references: [],
  }),
);
write(
  'tsconfig.spec.json',
  json({
    extends: '../../tsconfig.base.json',
    compilerOptions: { outDir: 'out-tsc/spec', tsBuildInfoFile: 'out-tsc/spec/tsconfig.spec.tsbuildinfo' },
    include: ['test/**/*.ts'],
    references: [{ path: './tsconfig.lib.json' }],
  }),
);
write('vitest.config.mjs', "import { preset } from '../../vitest.preset.mjs';\n\nexport default preset(import.meta.url);\n");
write('src/index.ts', `// @flare/${name}: ${description}\n// Nothing is exported until its issue lands: no stubs that pretend.\nexport {};\n`);
write(
  'test/package.test.ts',
  `import { readFileSync } from 'node:fs';\nimport { describe, expect, it } from 'vitest';\n\ndescribe('@flare/${name} package', () => {\n  it('is an ESM package named @flare/${name} with types first in its exports', () => {\n    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));\n    expect(pkg.name).toBe('@flare/${name}');\n    expect(pkg.type).toBe('module');\n    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');\n  });\n});\n`,
);
write('README.md', `# @flare/${name}\n\n${description}\n\nThis package is being built; until its issue lands it exports nothing.\n`);
console.log(`created ${dir}`);
