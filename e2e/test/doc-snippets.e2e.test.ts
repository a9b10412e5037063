// The TypeScript a reader copies compiles: every ```ts block of README.md, packages/*/README.md and docs/**/*.md
// and every @example of the packages' TSDoc, typechecked against the built packages as a user's project sees
// them (tools/scripts/doc-snippets.mjs says what a fragment may leave out). Run alone, with file:line for each
// error: `node tools/scripts/doc-snippets.mjs`.
import { describe, expect, it } from 'vitest';
import { checkSnippets, collectSnippets, exampleBlocks, markdownBlocks, type Snippet } from '../../tools/scripts/doc-snippets.mjs';

/** Snippets that must fail, each with the compiler error it must fail with. */
const BROKEN: ReadonlyArray<Snippet & { readonly expected: RegExp }> = [
  // the README example issue #16 found: a class that does not exist
  { id: 'broken-import', file: 'broken/import.md', line: 1, pkg: undefined, code: "import { FedAvg } from '@flare/aggregator';\nnew FedAvg();", expected: /^TS(2305|2724):/ },
  // a capitalised free name is never taken for the reader's own variable
  { id: 'broken-free-class', file: 'broken/free-class.md', line: 1, pkg: 'aggregator', code: 'const agg = new FedAvg({ kind: "diff" });', expected: /^TS2304:/ },
  // a free name the package exports is imported and checked for real: decodeModel takes bytes
  { id: 'broken-argument', file: 'broken/argument.md', line: 1, pkg: 'core', code: 'const m = decodeModel(42);', expected: /^TS2345:/ },
  // a wrong option name of a real API
  { id: 'broken-option', file: 'broken/option.md', line: 1, pkg: undefined, code: "import { decodeModel } from '@flare/core';\ndecodeModel(new Uint8Array(8), { maxBites: 1 });", expected: /^TS(2353|2561):/ },
];

/** Fragments a doc may write: free variables, `{ x }` of a free variable, elided code. */
const FRAGMENTS: readonly Snippet[] = [
  { id: 'ok-free', file: 'ok/free.md', line: 1, pkg: 'core', code: 'const back = decodeModel(bytes, { maxBytes: 1024 });\nconsole.log(back.kind);' },
  { id: 'ok-elided', file: 'ok/elided.md', line: 1, pkg: 'core', code: "try { decodeModel(bytes) } catch (e) { if (e instanceof FlareError) ... }\nconst o = { ..., site };\nf(...);" },
];

describe('README code blocks and TSDoc @examples compile against the built packages', () => {
  it('every snippet of the repository compiles; the broken ones fail with their error, the fragments pass', { timeout: 1_200_000 }, () => {
    const snippets = collectSnippets();
    // both sources are found: package READMEs, docs/ and @examples of several packages
    expect(snippets.filter((s) => /^packages\/[^/]+\/README\.md$/.test(s.file)).length).toBeGreaterThanOrEqual(10);
    expect(snippets.filter((s) => s.file.startsWith('docs/')).length).toBeGreaterThanOrEqual(3);
    expect(new Set(snippets.filter((s) => s.file.includes('/src/')).map((s) => s.pkg)).size).toBeGreaterThanOrEqual(8);

    const errors = checkSnippets([...snippets, ...BROKEN, ...FRAGMENTS]);
    const inRepo = errors.filter((e) => !e.file.startsWith('broken/') && !e.file.startsWith('ok/'));
    expect(inRepo.map((e) => `${e.file}:${e.line}: ${e.message}`)).toEqual([]);
    const missed = BROKEN.filter((b) => !errors.some((e) => e.file === b.file && b.expected.test(e.message)));
    expect(missed.map((b) => `${b.file}: ${errors.filter((e) => e.file === b.file).map((e) => e.message).join('; ') || 'no error'}`)).toEqual([]);
    expect(errors.filter((e) => e.file.startsWith('ok/'))).toEqual([]);
  });
});

describe('snippet extraction', () => {
  it('takes ```ts and ```typescript blocks with their line, skips ```ts nocheck and other languages', () => {
    const md = ['# T', '```ts', 'const a = 1;', '```', '```sh', 'ls', '```', '```ts nocheck', 'x', '```', '```typescript', 'const b = 2;', '```'].join('\n');
    expect(markdownBlocks(md)).toEqual([
      { line: 3, code: 'const a = 1;' },
      { line: 12, code: 'const b = 2;' },
    ]);
  });

  it('takes the ts blocks of @example (never a ```json one) and an unfenced @example whole, with their line', () => {
    const src = [
      '/**',
      ' * Does a thing.',
      ' *',
      ' * @example',
      ' * ```ts',
      ' * const x = thing();',
      ' * ```',
      ' * @example',
      ' * ```json',
      ' * { "a": 1 }',
      ' * ```',
      ' */',
      'export function thing() {}',
      '/** @example',
      ' * other();',
      ' */',
    ].join('\n');
    expect(exampleBlocks(src)).toEqual([
      { line: 6, code: 'const x = thing();' },
      { line: 15, code: 'other();' },
    ]);
  });
});
