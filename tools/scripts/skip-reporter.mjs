// A vitest reporter that writes every skipped test with its reason (the note of `ctx.skip(note)`) to a JSON file
// beside vitest's own report, so tools/scripts/test-summary.mjs can list them and CI can refuse them.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';

/** `reporters: [['default'], new SkipReporter(file, root)]` in a vitest config. */
export class SkipReporter {
  /**
   * @param {string} outputFile where the JSON array of `{ file, test, reason }` goes (written even when empty)
   * @param {string} root folder the test file names are relative to
   */
  constructor(outputFile, root) {
    this.outputFile = outputFile;
    this.root = root;
  }

  /** @param {ReadonlyArray<import('vitest/node').TestModule>} modules */
  onTestRunEnd(modules) {
    const skips = [];
    for (const m of modules) {
      for (const test of m.children.allTests()) {
        const r = test.result();
        if (r.state !== 'skipped') continue;
        skips.push({ file: relative(this.root, m.moduleId), test: test.fullName, reason: r.note ?? `no reason given (${test.options.mode})` });
      }
    }
    mkdirSync(dirname(this.outputFile), { recursive: true });
    writeFileSync(this.outputFile, `${JSON.stringify(skips, null, 1)}\n`);
  }
}
