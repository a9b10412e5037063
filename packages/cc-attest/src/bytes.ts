import { AttestError } from '@flare/core';

// Byte helpers shared by the parsers (internal). Every read is bounds-checked: evidence is untrusted input.

/** Lowercase hex of `bytes`. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Decodes hex (even length, [0-9a-fA-F]) or throws E_ATTEST_MALFORMED naming `what`. */
export function fromHex(text: string, what: string): Uint8Array {
  const t = text.trim();
  if (t.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(t)) throw new AttestError('E_ATTEST_MALFORMED', `${what} is not hex`);
  return new Uint8Array(Buffer.from(t, 'hex'));
}

/** True when both arrays hold the same bytes (constant time for equal lengths). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** A little-endian reader over a byte range that refuses reads past the end (E_ATTEST_MALFORMED). */
export class Reader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(offset: number, size: number): void {
    if (offset < 0 || size < 0 || offset + size > this.bytes.length) {
      throw new AttestError('E_ATTEST_MALFORMED', `${this.what} is truncated: needs ${offset + size} bytes, has ${this.bytes.length}`);
    }
  }
  u8(o: number): number {
    this.need(o, 1);
    return this.view.getUint8(o);
  }
  u16(o: number): number {
    this.need(o, 2);
    return this.view.getUint16(o, true);
  }
  u24(o: number): number {
    this.need(o, 3);
    return this.view.getUint16(o, true) | (this.view.getUint8(o + 2) << 16);
  }
  u32(o: number): number {
    this.need(o, 4);
    return this.view.getUint32(o, true);
  }
  u64(o: number): bigint {
    this.need(o, 8);
    return this.view.getBigUint64(o, true);
  }
  /** A view (no copy) of `size` bytes at `o`. */
  slice(o: number, size: number): Uint8Array {
    this.need(o, size);
    return this.bytes.subarray(o, o + size);
  }
}
