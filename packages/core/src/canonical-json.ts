import type { JsonValue } from './json.js';

/**
 * The canonical JSON text of a value (RFC 8785 JCS): object keys sorted by UTF-16 code units, no
 * whitespace, numbers and strings as ECMAScript serializes them. Two parties that hash or MAC the same
 * value get the same bytes, whatever order they built it in. Used by @flare/audit's hash chain and
 * @flare/auth's message MAC.
 *
 * @throws TypeError for values JSON cannot represent exactly (NaN, Infinity, undefined, functions, bigint).
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} has no JSON form`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    const parts: string[] = [];
    for (const k of keys) {
      const v = value[k];
      if (v === undefined) continue;
      parts.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  throw new TypeError(`canonicalJson: a ${typeof value} has no JSON form`);
}
