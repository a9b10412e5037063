import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError, parseStrictJson } from '../src/index.js';
import { expectFlareCode } from '../src/testing/index.js';

const hasForbiddenKey = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && Object.entries(v).some(([k, x]) => ['__proto__', 'constructor', 'prototype'].includes(k) || hasForbiddenKey(x));

/** JSON text of `value` with every key written as \uXXXX escapes, and `space` indentation between members. */
function escapedKeys(value: unknown, space: number | string): string {
  const pad = typeof space === 'number' ? ' '.repeat(space) : space;
  const key = (k: string) => `"${Array.from({ length: k.length }, (_, i) => `\\u${k.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;
  const write = (v: unknown): string => {
    if (Array.isArray(v)) return `[${pad}${v.map(write).join(`,${pad}`)}]`;
    if (typeof v === 'object' && v !== null) return `{${pad}${Object.entries(v).map(([k, x]) => `${key(k)}${pad}:${pad}${write(x)}`).join(`,\n${pad}`)}}`;
    return JSON.stringify(v);
  };
  return write(value);
}

/** Only a CodecError (or a value) for any input: the codec's contract. */
function parseOrCode(text: string): unknown {
  try {
    return parseStrictJson(text);
  } catch (e) {
    if (!(e instanceof CodecError)) throw new Error(`not a CodecError for ${JSON.stringify(text.slice(0, 80))}: ${String(e)}`);
    return e.code;
  }
}

describe('parseStrictJson', () => {
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
      { numRuns: 1000, seed: 2026120518 },
    );
  });

  it('agrees with JSON.parse on pretty-printed JSON with escapes in keys and values (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.constantFrom(0, 2, '\t'), (value, space) => {
        const text = escapedKeys(value, space);
        const reference: unknown = JSON.parse(text);
        if (hasForbiddenKey(reference)) expect(parseOrCode(text)).toBe('E_CODEC_FORBIDDEN_KEY');
        else expect(JSON.stringify(parseStrictJson(text))).toBe(JSON.stringify(reference));
      }),
      { numRuns: 500, seed: 2026120519 },
    );
  });

  it('refuses any duplicated key, at any depth and however it is escaped (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 5 }), fc.nat(), fc.nat(3), (obj, pick, depth) => {
        if (hasForbiddenKey(obj)) return;
        const keys = Object.keys(obj);
        const dup = keys[pick % keys.length]!;
        const inner = `${JSON.stringify(obj).slice(0, -1)},${JSON.stringify(dup)}:null}`;
        const text = '['.repeat(depth) + `{"x":${inner}}` + ']'.repeat(depth);
        const e = expectFlareCode(() => parseStrictJson(text), 'E_CODEC_DUPLICATE');
        expect(e.message).toContain(JSON.stringify(dup.slice(0, 128)));
      }),
      { numRuns: 500, seed: 2026120520 },
    );
  });

  it('creates objects without a prototype', () => {
    const v = parseStrictJson('{"a":{"b":1},"c":[{"d":2}]}') as Record<string, Record<string, unknown>>;
    expect(Object.getPrototypeOf(v)).toBeNull();
    expect(Object.getPrototypeOf(v['a'])).toBeNull();
    expect(Object.getPrototypeOf((v['c'] as unknown as Array<object>)[0])).toBeNull();
  });

  it.each([
    ['{"a":1,"a":2}', 'E_CODEC_DUPLICATE'],
    ['{"a":1,"\\u0061":2}', 'E_CODEC_DUPLICATE'],
    ['[{"a":{"b":1,"b":{"c":1}}}]', 'E_CODEC_DUPLICATE'],
    ['{"__proto__":1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"\\u005f_proto__":1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"constructo\\u0072" :1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"prototype":1}', 'E_CODEC_FORBIDDEN_KEY'],
    ['{"a":1,}', 'E_CODEC_HEADER_JSON'],
    ["{'a':1}", 'E_CODEC_HEADER_JSON'],
    ['[1,2', 'E_CODEC_HEADER_JSON'],
    ['"open', 'E_CODEC_HEADER_JSON'],
    ['01', 'E_CODEC_HEADER_JSON'],
    ['1e999', 'E_CODEC_HEADER_JSON'],
    ['[-1e999]', 'E_CODEC_HEADER_JSON'],
    ['{"a":[1e400]}', 'E_CODEC_HEADER_JSON'],
    ['"\u0001"', 'E_CODEC_HEADER_JSON'],
    ['NaN', 'E_CODEC_HEADER_JSON'],
    ['{} x', 'E_CODEC_HEADER_JSON'],
    ['\uFEFF{}', 'E_CODEC_HEADER_JSON'],
    ['', 'E_CODEC_HEADER_JSON'],
    ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]', 'E_CODEC_HEADER_JSON'],
  ])('refuses %s with %s', (text, code) => {
    expect(() => parseStrictJson(text)).toThrow(expect.objectContaining({ code }));
    expect(() => parseStrictJson(text)).toThrow(CodecError);
  });

  it('decodes escapes like JSON.parse, and "__proto__" as a value is a value', () => {
    expect(parseStrictJson('"\\u00e9\\n\\"\\/"')).toBe('é\n"/');
    expect(parseStrictJson('{"k":"__proto__","s":"a\\\\"}')).toEqual(Object.assign(Object.create(null), { k: '__proto__', s: 'a\\' }));
  });

  it('bounds the members before building anything (maxMembers, E_CODEC_TOO_LARGE)', () => {
    expect(parseStrictJson('{"a":1,"b":{"c":2}}', { maxMembers: 3 })).toBeDefined();
    expectFlareCode(() => parseStrictJson('{"a":1,"b":{"c":2,"d":3}}', { maxMembers: 3 }), 'E_CODEC_TOO_LARGE');
    // colons inside strings are not members
    expect(parseStrictJson('{"a:b":"c:d"}', { maxMembers: 1 })).toBeDefined();
  });

  it('hostile sizes give a CodecError, never a RangeError: a 10 M-character string, 1 M levels of nesting, 1 M open strings', () => {
    const long = 'x'.repeat(10_000_000);
    expect((parseStrictJson(`{"k":"${long}"}`) as Record<string, string>)['k']!.length).toBe(10_000_000);
    expect(parseOrCode(`{"k":"${long}\u0001"}`)).toBe('E_CODEC_HEADER_JSON');
    expect(parseOrCode(`{"${long}":1,"${long}":2}`)).toBe('E_CODEC_DUPLICATE');
    expect(parseOrCode(`"${'\\"'.repeat(1_000_000)}`)).toBe('E_CODEC_HEADER_JSON');
    expect(parseOrCode('['.repeat(1_000_000) + ']'.repeat(1_000_000))).toBe('E_CODEC_HEADER_JSON');
    expect(parseOrCode('{"a":'.repeat(1_000_000))).toBe('E_CODEC_HEADER_JSON');
    expect(parseOrCode('"'.repeat(1_000_001))).toBe('E_CODEC_HEADER_JSON');
    expect(parseOrCode(`[${'1,'.repeat(1_000_000)}1]`)).toHaveLength(1_000_001);
  });

  it('fuzz: any string, mutated JSON, or JSON made of structural characters only ever yields a value or a CodecError', () => {
    const structural = fc.array(fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '\\', 'a', '1', ' ', 'e', '-', '.'), { maxLength: 60 }).map((a) => a.join(''));
    const mutated = fc.tuple(fc.json(), fc.nat(), fc.string({ maxLength: 3 })).map(([j, at, s]) => j.slice(0, at % (j.length + 1)) + s + j.slice(at % (j.length + 1)));
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), structural, mutated), (text) => {
        parseOrCode(text);
      }),
      { numRuns: 20_000, seed: 2026120521 },
    );
  });
});
