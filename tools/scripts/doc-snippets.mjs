#!/usr/bin/env node
// Typechecks the TypeScript a reader copies: the ```ts blocks of README.md, packages/*/README.md and docs/**/*.md,
// and the @example blocks of every package's TSDoc, against the built packages (their dist/*.d.ts, resolved as
// a user's project resolves them). Used by e2e/test/doc-snippets.e2e.test.ts; run alone:
//
//   node tools/scripts/doc-snippets.mjs          # prints each error with file:line, exits 1 if any
//
// Snippets are fragments, so each one is a module of its own with three allowances, in this order:
// 1. a name it uses without importing that its own package exports (or, failing that, exactly one @flare
//    package exports) is imported from there, so `decodeModel(bytes)` in core's README is checked against
//    the real `decodeModel`;
// 2. any other free name starting with a lower-case letter (`bytes`, `dir`, `kit`) is declared `any`: the
//    reader's own variable;
// 3. nothing else: a capitalised free name (a class or type like `FedAvg` that does not exist) is an error.
// Unused locals and implicit any are allowed, and `...` standing for elided code (`{ ..., x }`,
// `a(); ... b();`). A block whose info string has `nocheck` (```ts nocheck) is skipped: keep that
// for declarations shown as an excerpt of a type.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** @typedef {import("./doc-snippets.d.mts").Snippet} Snippet */

/** Files under `dir` (recursively) whose name satisfies `keep`; node_modules and dist are not entered. */
function walk(dir, keep) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p, keep));
    else if (keep(name)) out.push(p);
  }
  return out;
}

/** The ```ts / ```typescript blocks of a markdown text, with the 1-based line of their first code line. */
export function markdownBlocks(text) {
  const blocks = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript)(\s.*)?$/.exec(lines[i]);
    if (open === null) continue;
    const indent = open[1].length;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end])) end++;
    if (!/\bnocheck\b/.test(open[3] ?? '')) {
      blocks.push({ line: start + 1, code: lines.slice(start, end).map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join('\n') });
    }
    i = end;
  }
  return blocks;
}

/** The @example blocks of the TSDoc comments in a TypeScript source text, with the line of their first code line. */
export function exampleBlocks(text) {
  const blocks = [];
  for (const m of text.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const firstLine = text.slice(0, m.index).split('\n').length;
    const lines = m[0].split('\n').map((l) => l.replace(/^\s*\/?\*+\/?\s?/, '').replace(/\s*\*\/$/, ''));
    for (let i = 0; i < lines.length; i++) {
      if (!/^@example\b/.test(lines[i])) continue;
      let end = i + 1;
      while (end < lines.length && !/^@\w/.test(lines[end])) end++;
      const body = lines.slice(i + 1, end);
      // Fenced: its ts blocks only (a ```json example is data); unfenced: the whole text is code.
      if (body.some((l) => l.trimStart().startsWith('```'))) {
        for (const b of markdownBlocks(body.join('\n'))) blocks.push({ line: firstLine + i + b.line, code: b.code });
      } else if (body.join('').trim() !== '') blocks.push({ line: firstLine + i + 1, code: body.join('\n').trimEnd() });
      i = end - 1;
    }
  }
  return blocks;
}

/** Every snippet of the repository at `root`. */
export function collectSnippets(root = ROOT) {
  /** @type {Snippet[]} */
  const snippets = [];
  const add = (file, pkg, blocks) => {
    for (const b of blocks) snippets.push({ id: `s${snippets.length}`, file: relative(root, file), line: b.line, pkg, code: b.code });
  };
  add(join(root, 'README.md'), undefined, markdownBlocks(readFileSync(join(root, 'README.md'), 'utf8')));
  for (const file of walk(join(root, 'docs'), (n) => n.endsWith('.md'))) add(file, undefined, markdownBlocks(readFileSync(file, 'utf8')));
  for (const pkg of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', pkg);
    try {
      add(join(dir, 'README.md'), pkg, markdownBlocks(readFileSync(join(dir, 'README.md'), 'utf8')));
    } catch {
      // a package without a README: the package check in pack.e2e.test.ts reports it
    }
    for (const file of walk(join(dir, 'src'), (n) => n.endsWith('.ts') && !n.endsWith('.d.ts'))) add(file, pkg, exampleBlocks(readFileSync(file, 'utf8')));
  }
  return snippets;
}

/** The compiler options of tsconfig.base.json, made fit for fragments. */
function compilerOptions(root) {
  const { config } = ts.readConfigFile(join(root, 'tsconfig.base.json'), ts.sys.readFile);
  const { options } = ts.convertCompilerOptionsFromJson(config.compilerOptions, root);
  return {
    ...options,
    composite: false,
    declaration: false,
    declarationMap: false,
    sourceMap: false,
    noEmit: true,
    // fragments leave values unused and import types without `import type`
    noUnusedLocals: false,
    noUnusedParameters: false,
    noImplicitAny: false,
    verbatimModuleSyntax: false,
    isolatedModules: false,
    // a reader's project is `strict`, rarely stricter: these two flags are this repository's own choice
    exactOptionalPropertyTypes: false,
    noUncheckedIndexedAccess: false,
    types: ['node'],
  };
}

// Cannot find name 'x' (and its "did you mean" variants), and a shorthand property `{ x }` with no `x` in scope.
/** `code` with the `...` that stand for elided code made valid: an elided spread, argument or statement. */
function elided(code) {
  return code
    .replace(/(^\s*|[;)]\s*)\.\.\.(?=\s|$)/gm, '$1{}') // a(); ... b(); if (x) ...
    .replace(/\.\.\.(?=\s*[,)}\]])/g, '...(0 as any)'); // { ..., x }, f(x, ...)
}

const FREE_NAME = new Set([2304, 2552, 2582, 2593, 18004]);

/**
 * Typechecks `snippets` against the packages built under `root`. Returns one entry per error:
 * `{ file, line, message }` with the line in the markdown or source file.
 */
export function checkSnippets(snippets, root = ROOT) {
  const options = compilerOptions(root);
  const dirOf = join(root, '.doc-snippets');
  const pathOf = (s) => join(dirOf, `${s.id}.ts`);

  // What each @flare package exports, read from its built typings.
  const packages = readdirSync(join(root, 'packages')).sort();
  const probe = join(dirOf, 'probe.ts');
  const probeText = packages.map((p, i) => `import * as p${i} from '@flare/${p}';\nvoid p${i};\n`).join('');
  /** @type {Map<string, string>} */
  let files = new Map([[probe, probeText]]);
  const host = ts.createCompilerHost(options, true);
  const readFile = host.readFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (f) => files.get(f) ?? readFile(f);
  host.fileExists = (f) => files.has(f) || fileExists(f);
  host.getSourceFile = (f, lang, onError) => (files.has(f) ? ts.createSourceFile(f, files.get(f), lang, true) : getSourceFile(f, lang, onError));

  /** @type {Map<string, Set<string>>} package -> exported names */
  const exportsOf = new Map();
  {
    const program = ts.createProgram([probe], options, host);
    const checker = program.getTypeChecker();
    const sf = program.getSourceFile(probe);
    for (const stmt of sf.statements) {
      if (!ts.isImportDeclaration(stmt)) continue;
      const pkg = stmt.moduleSpecifier.text.slice('@flare/'.length);
      const symbol = checker.getSymbolAtLocation(stmt.moduleSpecifier);
      exportsOf.set(pkg, new Set(symbol === undefined ? [] : checker.getExportsOfModule(symbol).map((e) => e.name)));
    }
  }
  const missing = packages.filter((p) => exportsOf.get(p)?.size === 0);
  if (missing.length > 0) throw new Error(`doc-snippets: no typings for ${missing.map((p) => `@flare/${p}`).join(', ')}: run \`npm run build\` first`);

  /** Where a free name comes from: its own package first, else the only @flare package exporting it. */
  const homeOf = (name, own) => {
    if (own !== undefined && exportsOf.get(own)?.has(name)) return own;
    const homes = packages.filter((p) => exportsOf.get(p).has(name));
    return homes.length === 1 ? homes[0] : undefined;
  };

  const compile = (preludes) => {
    files = new Map(snippets.map((s) => [pathOf(s), `${preludes.get(s.id) ?? ''}\n${elided(s.code)}\nexport {};\n`]));
    const program = ts.createProgram([...files.keys()], options, host);
    /** @type {Map<string, ts.Diagnostic[]>} */
    const bySnippet = new Map();
    for (const s of snippets) {
      const sf = program.getSourceFile(pathOf(s));
      bySnippet.set(s.id, [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]);
    }
    return bySnippet;
  };

  // Pass 1: find the free names; pass 2: import or declare them and check for real.
  const first = compile(new Map());
  const preludes = new Map();
  for (const s of snippets) {
    const imports = new Map();
    const declared = new Set();
    for (const d of first.get(s.id)) {
      if (!FREE_NAME.has(d.code) || d.file === undefined || d.start === undefined) continue;
      const name = d.file.text.slice(d.start, d.start + (d.length ?? 0));
      // `{ x }` names the reader's own variable; elsewhere a free name may be a package's export
      const home = d.code === 18004 ? undefined : homeOf(name, s.pkg);
      if (home !== undefined) imports.set(home, new Set([...(imports.get(home) ?? []), name]));
      else if (/^[a-z_$]/.test(name)) declared.add(name);
    }
    const lines = [...imports].map(([p, names]) => `import { ${[...names].sort().join(', ')} } from '@flare/${p}';`);
    for (const name of [...declared].sort()) lines.push(`declare let ${name}: any;`);
    // One line in all, so that the snippet's line numbers stay where they were plus one.
    preludes.set(s.id, lines.join(' '));
  }
  const second = compile(preludes);

  const errors = [];
  for (const s of snippets) {
    // TS2556 (a spread argument must be a tuple) is what an elided argument list `f(...)` becomes
    for (const d of second.get(s.id).filter((x) => x.code !== 2556)) {
      const at = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : 1;
      errors.push({ file: s.file, line: s.line + Math.max(0, at - 1), message: `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}` });
    }
  }
  return errors;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const snippets = collectSnippets();
  const errors = checkSnippets(snippets);
  for (const e of errors) console.log(`${e.file}:${e.line}: ${e.message}`);
  console.log(`${snippets.length} snippets checked, ${errors.length} errors`);
  process.exitCode = errors.length === 0 ? 0 : 1;
}
