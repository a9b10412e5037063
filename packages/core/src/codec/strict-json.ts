import { CodecError } from '../errors/areas.js';
import type { JsonValue } from '../json.js';

/** Keys that could reach an object prototype if a consumer ever copied wire data into a plain object. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Limits for {@link parseStrictJson}. */
export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects (default 32). */
  readonly maxDepth?: number;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// eslint-disable-next-line no-control-regex -- RFC 8259 forbids raw control characters in strings: match them to refuse them
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const WS = /[ \t\n\r]*/y;

/**
 * Parses wire JSON more strictly than JSON.parse: a duplicate key is refused (JSON.parse silently keeps the
 * last one, which lets two readers see different values), keys that name prototypes are refused, nesting is
 * bounded, and objects are created without a prototype. Grammar per RFC 8259.
 *
 * @throws CodecError E_CODEC_HEADER_JSON, E_CODEC_DUPLICATE or E_CODEC_FORBIDDEN_KEY.
 */
export function parseStrictJson(text: string, { maxDepth = 32 }: StrictJsonOptions = {}): JsonValue {
  let pos = 0;
  const fail = (what: string): never => {
    throw new CodecError('E_CODEC_HEADER_JSON', `invalid JSON at offset ${pos}: ${what}`);
  };
  const skip = (): void => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  const string = (): string => {
    STRING.lastIndex = pos;
    const m = STRING.exec(text);
    if (m === null) return fail('bad string');
    pos = STRING.lastIndex;
    return JSON.parse(m[0]) as string;
  };
  const value = (depth: number): JsonValue => {
    skip();
    const c = text[pos];
    if (c === '{') {
      if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
      pos++;
      const obj = Object.create(null) as Record<string, JsonValue>;
      const seen = new Set<string>();
      skip();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[pos] !== '"') fail('expected a key');
        const key = string();
        if (FORBIDDEN_KEYS.has(key)) throw new CodecError('E_CODEC_FORBIDDEN_KEY', `forbidden key ${JSON.stringify(key)} in JSON`);
        if (seen.has(key)) throw new CodecError('E_CODEC_DUPLICATE', `duplicate key ${JSON.stringify(key)} in JSON`);
        seen.add(key);
        skip();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        obj[key] = value(depth + 1);
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      if (depth >= maxDepth) fail(`nesting deeper than ${maxDepth}`);
      pos++;
      const arr: JsonValue[] = [];
      skip();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    if (text.startsWith('true', pos)) return (pos += 4), true;
    if (text.startsWith('false', pos)) return (pos += 5), false;
    if (text.startsWith('null', pos)) return (pos += 4), null;
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m === null) return fail('unexpected character');
    pos = NUMBER.lastIndex;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) fail('number out of range');
    return n;
  };
  const result = value(0);
  skip();
  if (pos !== text.length) fail('trailing characters');
  return result;
}
