// A minimal DER reader (ITU-T X.690 8.1): just enough to take a CRL apart into the exact to-be-signed bytes
// and the signature, so its signature can be checked synchronously with node:crypto.

/** One DER element: tag, whole encoding and contents (views into the input). */
export interface DerElement {
  readonly tag: number;
  /** The whole element (tag, length and contents). */
  readonly raw: Uint8Array;
  readonly content: Uint8Array;
}

/** Reads one element at `offset`; throws RangeError on truncated or non-minimal lengths. */
export function readElement(buf: Uint8Array, offset = 0): DerElement {
  if (offset + 2 > buf.length) throw new RangeError('DER: truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new RangeError('DER: multi-byte tags are not used here');
  let len = buf[offset + 1]!;
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new RangeError('DER: unsupported length');
    if (pos + n > buf.length) throw new RangeError('DER: truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i]!;
    if (len < 128 || (n > 1 && buf[pos] === 0)) throw new RangeError('DER: non-minimal length');
    pos += n;
  }
  if (pos + len > buf.length) throw new RangeError('DER: truncated contents');
  return { tag, raw: buf.subarray(offset, pos + len), content: buf.subarray(pos, pos + len) };
}

/** The elements of a constructed element's contents, in order. */
export function children(el: DerElement): DerElement[] {
  const out: DerElement[] = [];
  let off = 0;
  while (off < el.content.length) {
    const child = readElement(el.content, off);
    out.push(child);
    off += child.raw.length;
  }
  return out;
}

/** DER INTEGER of a non-negative safe integer (for the CRL number extension, RFC 5280 5.2.3). */
export function derInteger(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`"value" expected a non-negative safe integer, got ${value}`);
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return Uint8Array.from([0x02, bytes.length, ...bytes]);
}

/** DER TLV with a definite length (X.690 8.1.3). */
export function derTlv(tag: number, content: Uint8Array): Uint8Array {
  const len = content.length;
  let header: number[];
  if (len < 0x80) header = [tag, len];
  else {
    const bytes: number[] = [];
    for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    header = [tag, 0x80 | bytes.length, ...bytes];
  }
  const out = new Uint8Array(header.length + len);
  out.set(header);
  out.set(content, header.length);
  return out;
}

/** DER SEQUENCE of already-encoded elements. */
export function derSequence(...elements: readonly Uint8Array[]): Uint8Array {
  const total = elements.reduce((n, e) => n + e.length, 0);
  const body = new Uint8Array(total);
  let off = 0;
  for (const e of elements) {
    body.set(e, off);
    off += e.length;
  }
  return derTlv(0x30, body);
}

/** DER OBJECT IDENTIFIER from dotted text (X.690 8.19). */
export function derOid(oid: string): Uint8Array {
  const parts = oid.split('.').map(Number);
  if (parts.length < 2 || parts.some((p) => !Number.isSafeInteger(p) || p < 0)) throw new RangeError(`"oid" expected dotted decimal, got ${oid}`);
  const bytes: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return derTlv(0x06, Uint8Array.from(bytes));
}
