import { AttestError, CodecError, derChildren, derOid, derRead, derSafeInteger, derTime, DER_TAG, type DerNode } from '@flare/core';

// The vendor structures (AMD 1.3.6.1.4.1.3704.1.x extensions, Intel SGX 1.2.840.113741.1.13.1, TCG DICE
// 2.23.133.5.4.1, OCSP, CRL entries) read with @flare/core's one strict DER reader. This file only gives its
// offsets the shape the verifiers use (views of each element's contents) and reports a DER error as
// E_ATTEST_MALFORMED. Internal.

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
  BOOLEAN: DER_TAG.BOOLEAN,
  INTEGER: DER_TAG.INTEGER,
  BIT_STRING: DER_TAG.BIT_STRING,
  OCTET_STRING: DER_TAG.OCTET_STRING,
  NULL: DER_TAG.NULL,
  OID: DER_TAG.OID,
  UTF8: DER_TAG.UTF8_STRING,
  PRINTABLE: DER_TAG.PRINTABLE_STRING,
  IA5: DER_TAG.IA5_STRING,
  UTC_TIME: DER_TAG.UTC_TIME,
  GENERALIZED_TIME: DER_TAG.GENERALIZED_TIME,
  SEQUENCE: DER_TAG.SEQUENCE,
  SET: DER_TAG.SET,
} as const;

const bad = (what: string): never => {
  throw new AttestError('E_ATTEST_MALFORMED', `bad DER: ${what}`);
};

/** Runs a core DER read, reporting its E_CODEC_DER as the evidence being malformed. */
function asEvidence<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof CodecError) throw new AttestError('E_ATTEST_MALFORMED', `bad ${e.message}`, { cause: e });
    throw e;
  }
}

function view(buf: Uint8Array, n: DerNode): Tlv {
  return { tag: n.tag, constructed: (n.tag & 0x20) !== 0, start: n.start, end: n.end, value: buf.subarray(n.body, n.end), raw: buf.subarray(n.start, n.end) };
}

/** Reads the element at `offset` of `buf`. */
export function readTlv(buf: Uint8Array, offset = 0): Tlv {
  return view(buf, asEvidence(() => derRead(buf, offset)));
}

/** The elements inside a constructed element's contents (or inside any byte range). */
export function children(value: Uint8Array): Tlv[] {
  return asEvidence(() => derChildren(value, { tag: 0, start: 0, body: 0, end: value.length })).map((n) => view(value, n));
}

/** Reads an element of the expected tag or throws. */
export function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined || t.tag !== tag) return bad(`expected ${what}`);
  return t;
}

/** Dotted form of an OBJECT IDENTIFIER's content octets. */
export function oid(value: Uint8Array): string {
  return asEvidence(() => derOid(value, { tag: TAG.OID, start: 0, body: 0, end: value.length }));
}

/** A non-negative INTEGER's content octets as a number (refuses values above 2^53 - 1). */
export function uint(value: Uint8Array): number {
  return asEvidence(() => derSafeInteger(value, { tag: TAG.INTEGER, start: 0, body: 0, end: value.length }));
}

/** UTCTime or GeneralizedTime (RFC 5280 4.1.2.5) as a Date. */
export function time(t: Tlv): Date {
  return asEvidence(() => derTime(t.raw, { tag: t.tag, start: 0, body: t.raw.length - t.value.length, end: t.raw.length }));
}
