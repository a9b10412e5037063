// The survivor set of a round as a bitmap over the sorted site list: bit i (byte i >> 3, bit i & 7) is site i.
// ceil(n/8) bytes whatever the names, so the consistency check costs 1.25 KB per site at 10,000 sites. Internal.

/** Bytes of the bitmap of `sites` sites. */
export function bitmapSize(sites: number): number {
  return Math.ceil(sites / 8);
}

/** The bitmap of a set of site indices. */
export function writeBitmap(indices: Iterable<number>, sites: number): Uint8Array {
  const out = new Uint8Array(bitmapSize(sites));
  for (const i of indices) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

/** The set of site indices in a bitmap, or undefined when it has the wrong size or bits past the last site. */
export function readBitmap(bitmap: Uint8Array, sites: number): Set<number> | undefined {
  if (bitmap.length !== bitmapSize(sites)) return undefined;
  const set = new Set<number>();
  for (let i = 0; i < bitmap.length * 8; i++) {
    if ((bitmap[i >> 3]! >> (i & 7)) & 1) {
      if (i >= sites) return undefined;
      set.add(i);
    }
  }
  return set;
}
