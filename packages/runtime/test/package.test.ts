import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('@flare/runtime package', () => {
  it('is an ESM package named @flare/runtime with types first in its exports', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.name).toBe('@flare/runtime');
    expect(pkg.type).toBe('module');
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');
    expect(Object.keys(pkg.exports['./testing'])[0]).toBe('types');
  });

  it('HE and attestation are optional peers, never dependencies (issue #16 item 6)', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    for (const name of ['@flare/filters-he', '@flare/cc-attest']) {
      expect(pkg.dependencies[name]).toBeUndefined();
      expect(pkg.peerDependenciesMeta[name]).toEqual({ optional: true });
    }
  });
});
