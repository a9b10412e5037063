import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('@flare/secagg package', () => {
  it('is an ESM package named @flare/secagg with types first in its exports', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.name).toBe('@flare/secagg');
    expect(pkg.type).toBe('module');
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');
  });
});
