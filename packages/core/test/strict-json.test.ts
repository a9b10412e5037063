import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError, parseStrictJson } from '../src/index.js';

describe('parseStrictJson', () => {
  const hasForbiddenKey = (v: unknown): boolean =>
    typeof v === 'object' && v !== null && Object.entries(v).some(([k, x]) => ['__proto__', 'constructor', 'prototype'].includes(k) || hasForbiddenKey(x));

  it('agrees with JSON.parse on every JSON text, except that it refuses prototype keys (property)', () => {
    fc.assert(
      fc.property(fc.json({ depthSize: 'small' }), (text) => {
        const reference: unknown = JSON.parse(text);
        if (hasForbiddenKey(reference)) {
          expect(() => parseStrictJson(text)).toThrow(expect.objectContaining({ code: 'E_CODEC_FORBIDDEN_KEY' }));
        } else {
          expect(JSON.stringify(parseStrictJson(text))).toBe(JSON.stringify(reference));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('creates objects without a prototype', () => {
    const v = parseStrictJson('{"a":{"b":1}}') as Record<string, Record<string, number>>;
    expect(Object.getPrototypeOf(v)).toBeNull();
    expect(Object.getPrototypeOf(v['a'])).toBeNull();
  });

  it.each([
    ['{"a":1,"a":2}', 'E_CODEC_DUPLICATE'],
    ['{"__proto__":1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"prototype":1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"a":1,}', 'E_CODEC_HEADER_JSON'],
    ["{'a':1}", 'E_CODEC_HEADER_JSON'],
    ['[1,2', 'E_CODEC_HEADER_JSON'],
    ['01', 'E_CODEC_HEADER_JSON'],
    ['1e999', 'E_CODEC_HEADER_JSON'],
    ['"\u0001"', 'E_CODEC_HEADER_JSON'],
    ['NaN', 'E_CODEC_HEADER_JSON'],
    ['{} x', 'E_CODEC_HEADER_JSON'],
    ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]', 'E_CODEC_HEADER_JSON'],
  ])('refuses %s with %s', (text, code) => {
    expect(() => parseStrictJson(text)).toThrow(expect.objectContaining({ code }));
    expect(() => parseStrictJson(text)).toThrow(CodecError);
  });

  it('decodes escapes like JSON.parse', () => {
    expect(parseStrictJson('"\\u00e9\\n\\"\\/"')).toBe('é\n"/');
  });
});
