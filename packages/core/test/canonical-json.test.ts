import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, type JsonValue } from '../src/index.js';

describe('canonicalJson (RFC 8785)', () => {
  it('RFC 8785 3.2.3: sorts keys by UTF-16 code units', () => {
    // The sorting example of RFC 8785 section 3.2.3
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    expect(canonicalJson(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('RFC 8785 3.2.2.3: numbers in ECMAScript form, no whitespace', () => {
    // eslint-disable-next-line no-loss-of-precision -- the RFC's own input literal
    expect(canonicalJson({ numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001], b: [true, null] })).toBe(
      '{"b":[true,null],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}',
    );
  });

  it('is independent of key insertion order (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        expect(canonicalJson(reversed as JsonValue)).toBe(canonicalJson(obj as JsonValue));
        expect(JSON.parse(canonicalJson(obj as JsonValue))).toEqual(JSON.parse(JSON.stringify(obj)));
      }),
      { seed: 2026120509 },
    );
  });

  it('refuses values without an exact JSON form', () => {
    expect(() => canonicalJson(NaN)).toThrow(TypeError);
    expect(() => canonicalJson({ a: Infinity })).toThrow(TypeError);
  });
});
