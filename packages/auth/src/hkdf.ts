import { hkdfSync } from 'node:crypto';

/**
 * HKDF-SHA256 (RFC 5869) through node:crypto: extract with `salt`, expand with `info` to `length` bytes.
 *
 * @throws RangeError when `length` is not 1..8160 (255 * HashLen, RFC 5869 section 2.3).
 */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Uint8Array {
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) throw new RangeError(`"length" expected 1..8160, got ${length}`);
  return new Uint8Array(hkdfSync('sha256', ikm, salt, typeof info === 'string' ? Buffer.from(info, 'utf8') : info, length));
}
