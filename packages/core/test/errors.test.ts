import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CodecError, ERROR_AREAS, errorInfo, FlareError, isFlareError, isFlareErrorCode, PkiError } from '../src/index.js';
import { renderErrorsDoc } from '../src/errors/doc.js';

describe('FlareError', () => {
  it('carries a stable code, its subclass name, a cause and the catalog hint', () => {
    const cause = new Error('low level');
    const e = new CodecError('E_CODEC_TRUNCATED', 'frame cut short', { cause });
    expect(e).toBeInstanceOf(FlareError);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('CodecError');
    expect(e.code).toBe('E_CODEC_TRUNCATED');
    expect(e.cause).toBe(cause);
    expect(e.hint).toBe(errorInfo('E_CODEC_TRUNCATED').action);
    expect(e.describe()).toMatch(/^E_CODEC_TRUNCATED: frame cut short What to do: /);
    expect(isFlareError(e, 'E_CODEC_TRUNCATED')).toBe(true);
    expect(isFlareError(e, 'E_CODEC_MAGIC')).toBe(false);
    expect(e instanceof PkiError).toBe(false);
  });

  it('every code is E_-prefixed, unique across areas, and has a meaning and an action sentence', () => {
    const seen = new Set<string>();
    for (const [, catalog] of ERROR_AREAS) {
      for (const [code, info] of Object.entries(catalog) as Array<[string, { meaning: string; action: string }]>) {
        expect(code).toMatch(/^E_[A-Z0-9_]+$/);
        expect(seen.has(code), code).toBe(false);
        seen.add(code);
        expect(info.meaning, code).toMatch(/\.$/);
        expect(info.action, code).toMatch(/\.$/);
        expect(isFlareErrorCode(code)).toBe(true);
      }
    }
    expect(isFlareErrorCode('E_NOT_A_CODE')).toBe(false);
  });

  it('docs/errors.md is generated from the catalogs and up to date (run `npm run errors:doc`)', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    expect(doc).toBe(renderErrorsDoc(ERROR_AREAS));
  });
});
