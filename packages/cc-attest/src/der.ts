import { AttestError } from '@flare/core';

// A minimal DER reader (X.690) for the parts of certificates and CRLs node:crypto does not expose: the vendor
// extensions (AMD 1.3.6.1.4.1.3704.1.x, Intel SGX 1.2.840.113741.1.13.1, TCG DICE 2.23.133.5.4.1), signature
// algorithm parameters, and CRL entries. Internal; it refuses indefinite lengths and high tag numbers, which
// DER does not use for these structures.

/** One tag-length-value element. `value` and `raw` are views into the input (no copy). */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number). */
  readonly tag: number;
  readonly constructed: boolean;
  readonly start: number;
  readonly end: number;
  readonly value: Uint8Array;
  readonly raw: Uint8Array;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8: 0x0c,
  PRINTABLE: 0x13,
  IA5: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

const bad = (what: string): never => {
  throw new AttestError('E_ATTEST_MALFORMED', `bad DER: ${what}`);
};

/** Reads the element at `offset` of `buf`. */
export function readTlv(buf: Uint8Array, offset = 0): Tlv {
  if (offset + 2 > buf.length) bad('truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) bad('high tag number');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) bad('unsupported length form');
    if (p + n > buf.length) bad('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  const end = p + len;
  if (end > buf.length) bad('length past end');
  return { tag, constructed: (tag & 0x20) !== 0, start: offset, end, value: buf.subarray(p, end), raw: buf.subarray(offset, end) };
}

/** The elements inside a constructed element (or inside any byte range). */
export function children(value: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let p = 0;
  while (p < value.length) {
    const t = readTlv(value, p);
    out.push(t);
    p = t.end;
  }
  return out;
}

/** Reads an element of the expected tag or throws. */
export function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined || t.tag !== tag) return bad(`expected ${what}`);
  return t;
}

/** Dotted form of an OBJECT IDENTIFIER's content octets. */
export function oid(value: Uint8Array): string {
  if (value.length === 0) bad('empty OID');
  const parts: number[] = [];
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const b = value[i]!;
    n = n * 128 + (b & 0x7f);
    if (n > Number.MAX_SAFE_INTEGER / 256) bad('OID arc too large');
    if ((b & 0x80) === 0) {
      if (parts.length === 0) {
        const first = n < 40 ? 0 : n < 80 ? 1 : 2;
        parts.push(first, n - first * 40);
      } else parts.push(n);
      n = 0;
    }
  }
  return parts.join('.');
}

/** A non-negative INTEGER's content octets as a number (refuses values above 2^53). */
export function uint(value: Uint8Array): number {
  let n = 0;
  for (const b of value) {
    n = n * 256 + b;
    if (n > Number.MAX_SAFE_INTEGER) bad('integer too large');
  }
  if (value.length > 0 && (value[0]! & 0x80) !== 0) bad('negative integer');
  return n;
}

/** UTCTime or GeneralizedTime (RFC 5280 4.1.2.5) as a Date. */
export function time(t: Tlv): Date {
  const s = Buffer.from(t.value).toString('latin1');
  let m: RegExpExecArray | null;
  if (t.tag === TAG.UTC_TIME && (m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy >= 50 ? 1900 + yy : 2000 + yy, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (t.tag === TAG.GENERALIZED_TIME && (m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  return bad('time');
}
