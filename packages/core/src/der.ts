// One strict DER reader and writer (ITU-T X.690 8.1, 10.1) for every package that takes certificates, CRLs
// and vendor attestation structures apart or builds them: @flare/pki (certificate fields on the login path,
// CRLs, encrypted keys) and @flare/cc-attest (vendor extensions, OCSP, synthetic test evidence).
//
// Strict: definite lengths only, in the minimal form; single-byte tags; contents that end exactly where their
// parent ends; OBJECT IDENTIFIER arcs minimal and below 2^53; INTEGERs minimal. Fast: the reader walks offsets
// in the one input buffer (a node is four numbers, no copy), because a login parses a certificate with it.

import { CodecError } from './errors/areas.js';

/** One DER element by offsets into the buffer it was read from: tag, start, start of contents, end. */
export interface DerNode {
  /** The identifier octet (class, constructed bit, tag number below 31). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly body: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/** Universal tags (X.680 8.4) FLARE-TS reads and writes. */
export const DER_TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Lengths above this are refused (4 length octets; no DER structure FLARE-TS reads is near it). */
const MAX_LENGTH_OCTETS = 4;

function malformed(what: string): never {
  throw new CodecError('E_CODEC_DER', `DER: ${what}`);
}

/**
 * Reads the element at `at`, which must end by `limit` (default: the end of `buf`).
 *
 * @throws CodecError E_CODEC_DER: truncated, indefinite or non-minimal length, multi-byte tag.
 */
export function derRead(buf: Uint8Array, at = 0, limit = buf.length): DerNode {
  if (at + 2 > limit) malformed('truncated header');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) malformed('multi-byte tag');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) malformed('indefinite length');
    if (n > MAX_LENGTH_OCTETS) malformed('length too large');
    if (body + n > limit) malformed('truncated length');
    if (buf[body] === 0) malformed('non-minimal length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    if (len < 0x80) malformed('non-minimal length');
    body += n;
  }
  if (body + len > limit) malformed('truncated contents');
  return { tag, start: at, body, end: body + len };
}

/** Reads one whole-buffer element: the element must fill `buf` exactly (no trailing bytes). */
export function derReadAll(buf: Uint8Array): DerNode {
  const node = derRead(buf);
  if (node.end !== buf.length) malformed('trailing bytes');
  return node;
}

/** The elements inside a constructed element, in order; they must fill its contents exactly. */
export function derChildren(buf: Uint8Array, parent: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const child = derRead(buf, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** `node` when it has `tag`; otherwise E_CODEC_DER naming `what` was expected. */
export function derExpect(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined || node.tag !== tag) malformed(`expected ${what}`);
  return node;
}

/** The content octets of `node` (a view into `buf`, no copy). */
export function derContent(buf: Uint8Array, node: DerNode): Uint8Array {
  return buf.subarray(node.body, node.end);
}

/** The whole encoding of `node`: identifier, length and contents (a view into `buf`). */
export function derRaw(buf: Uint8Array, node: DerNode): Uint8Array {
  return buf.subarray(node.start, node.end);
}

/**
 * The dotted form of an OBJECT IDENTIFIER (X.690 8.19): at least one arc octet, every arc minimal (no leading
 * 0x80), no arc at or above 2^53 (a longer arc cannot be compared exactly as a JavaScript number).
 */
export function derOid(buf: Uint8Array, node: DerNode): string {
  if (node.end === node.body || (buf[node.end - 1]! & 0x80) !== 0) malformed('malformed OID');
  let out = '';
  let v = 0;
  let first = true;
  let fresh = true;
  for (let i = node.body; i < node.end; i++) {
    const b = buf[i]!;
    if (fresh && b === 0x80) malformed('non-minimal OID arc');
    // v * 128 + 127 must stay exact: refuse before it could pass 2^53.
    if (v > (Number.MAX_SAFE_INTEGER - 127) / 128) malformed('OID arc too large');
    v = v * 128 + (b & 0x7f);
    fresh = false;
    if (!(b & 0x80)) {
      if (first) {
        const a = v < 40 ? 0 : v < 80 ? 1 : 2;
        out = `${a}.${v - a * 40}`;
        first = false;
      } else out += `.${v}`;
      v = 0;
      fresh = true;
    }
  }
  return out;
}

/** A non-negative INTEGER (X.690 8.3) as a bigint; refuses a negative or non-minimal one. */
export function derUnsigned(buf: Uint8Array, node: DerNode): bigint {
  const { body, end } = node;
  if (end === body) malformed('empty INTEGER');
  if (buf[body]! & 0x80) malformed('negative INTEGER');
  if (end - body > 1 && buf[body] === 0 && (buf[body + 1]! & 0x80) === 0) malformed('non-minimal INTEGER');
  let v = 0n;
  for (let i = body; i < end; i++) v = (v << 8n) | BigInt(buf[i]!);
  return v;
}

/** A non-negative INTEGER as a number; refuses one above 2^53 - 1 (and what {@link derUnsigned} refuses). */
export function derSafeInteger(buf: Uint8Array, node: DerNode): number {
  const v = derUnsigned(buf, node);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) malformed('INTEGER too large');
  return Number(v);
}

/** A DER BOOLEAN (X.690 11.1): one octet, 0x00 or 0xFF. */
export function derBoolean(buf: Uint8Array, node: DerNode): boolean {
  if (node.end - node.body !== 1) malformed('BOOLEAN is not one octet');
  const b = buf[node.body];
  if (b !== 0 && b !== 0xff) malformed('BOOLEAN is neither 0x00 nor 0xFF');
  return b === 0xff;
}

function twoDigits(buf: Uint8Array, i: number): number {
  const a = buf[i]! - 0x30;
  const b = buf[i + 1]! - 0x30;
  if (a < 0 || a > 9 || b < 0 || b > 9) malformed('malformed time');
  return a * 10 + b;
}

/**
 * RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50 is 19YY) or GeneralizedTime YYYYMMDDHHMMSSZ, UTC, no
 * fractions; out-of-range fields (month 13, day 32, hour 24, second 60) are refused, not rolled over.
 */
export function derTime(buf: Uint8Array, node: DerNode | undefined): Date {
  if (node === undefined || (node.tag !== DER_TAG.UTC_TIME && node.tag !== DER_TAG.GENERALIZED_TIME)) malformed('expected a time');
  const long = node.tag === DER_TAG.GENERALIZED_TIME;
  const { body, end } = node;
  if (end - body !== (long ? 15 : 13) || buf[end - 1] !== 0x5a /* Z */) malformed('time is not in RFC 5280 form');
  let year = long ? twoDigits(buf, body) * 100 + twoDigits(buf, body + 2) : twoDigits(buf, body);
  if (!long) year += year >= 50 ? 1900 : 2000;
  const o = body + (long ? 4 : 2);
  const [month, day, hour, minute, second] = [twoDigits(buf, o), twoDigits(buf, o + 2), twoDigits(buf, o + 4), twoDigits(buf, o + 6), twoDigits(buf, o + 8)];
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || second > 59) {
    malformed('time out of range');
  }
  return d;
}

// ---- Writer: every function returns one complete DER element. ----

/** One element with a definite, minimal length (X.690 8.1.3, 10.1). */
export function derEncode(tag: number, content: Uint8Array): Uint8Array {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) throw new RangeError(`"tag" expected a single-octet tag, got ${tag}`);
  const n = content.length;
  let header: number[];
  if (n < 0x80) header = [tag, n];
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    header = [tag, 0x80 | bytes.length, ...bytes];
  }
  const out = new Uint8Array(header.length + n);
  out.set(header);
  out.set(content, header.length);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SEQUENCE of already-encoded elements. */
export function derSequence(...elements: readonly Uint8Array[]): Uint8Array {
  return derEncode(DER_TAG.SEQUENCE, concat(elements));
}

/** SET of already-encoded elements, in the order given (X.690 11.6 wants them sorted: pass them sorted). */
export function derSet(...elements: readonly Uint8Array[]): Uint8Array {
  return derEncode(DER_TAG.SET, concat(elements));
}

/** A context-specific element `[n]`, constructed (EXPLICIT, the default) or primitive (IMPLICIT). */
export function derContext(n: number, content: Uint8Array, constructed = true): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`"n" expected a context tag number 0-30, got ${n}`);
  return derEncode((constructed ? 0xa0 : 0x80) | n, content);
}

/** A non-negative INTEGER, minimal, from a number, a bigint or big-endian unsigned bytes. */
export function derInteger(value: number | bigint | Uint8Array): Uint8Array {
  let bytes: Uint8Array;
  if (value instanceof Uint8Array) bytes = value.length === 0 ? new Uint8Array(1) : value;
  else {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`"value" expected a non-negative safe integer, got ${value}`);
    const big = BigInt(value);
    if (big < 0n) throw new RangeError(`"value" expected a non-negative integer, got ${value}`);
    let hex = big.toString(16);
    if (hex.length % 2) hex = `0${hex}`;
    bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
  }
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  bytes = bytes.subarray(i);
  return derEncode(DER_TAG.INTEGER, bytes[0]! & 0x80 ? concat([new Uint8Array([0]), bytes]) : bytes);
}

/** OBJECT IDENTIFIER from dotted decimal (X.690 8.19). */
export function derOidEncode(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  const [a, b] = arcs;
  if (arcs.length < 2 || arcs.some((p) => !Number.isSafeInteger(p)) || a! > 2 || (a! < 2 && b! > 39)) throw new RangeError(`"oid" expected dotted decimal, got ${dotted}`);
  const out: number[] = [];
  const push = (arc: number): void => {
    const chunk = [arc % 128];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v % 128) | 0x80);
    out.push(...chunk);
  };
  push(a! * 40 + b!);
  for (const arc of arcs.slice(2)) push(arc);
  return derEncode(DER_TAG.OID, Uint8Array.from(out));
}

/** OCTET STRING. */
export function derOctetString(bytes: Uint8Array): Uint8Array {
  return derEncode(DER_TAG.OCTET_STRING, bytes);
}

/** BIT STRING of whole octets (no unused bits). */
export function derBitString(bytes: Uint8Array): Uint8Array {
  return derEncode(DER_TAG.BIT_STRING, concat([new Uint8Array([0]), bytes]));
}

/** UTF8String. */
export function derUtf8String(text: string): Uint8Array {
  return derEncode(DER_TAG.UTF8_STRING, new TextEncoder().encode(text));
}

/** IA5String (ASCII; refuses anything else). */
export function derIa5String(text: string): Uint8Array {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) throw new RangeError('"text" expected ASCII for an IA5String');
  return derEncode(DER_TAG.IA5_STRING, Uint8Array.from(Buffer.from(text, 'latin1')));
}

/** BOOLEAN (0xFF for true, X.690 11.1). */
export function derBooleanEncode(value: boolean): Uint8Array {
  return derEncode(DER_TAG.BOOLEAN, new Uint8Array([value ? 0xff : 0]));
}

/** NULL. */
export function derNull(): Uint8Array {
  return new Uint8Array([DER_TAG.NULL, 0]);
}

/** RFC 5280 4.1.2.5: UTCTime before 2050, GeneralizedTime from 2050 on; whole seconds, UTC. */
export function derTimeEncode(date: Date): Uint8Array {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`"date" expected a year 1950-9999, got ${year}`);
  return year < 2050 ? derEncode(DER_TAG.UTC_TIME, Uint8Array.from(Buffer.from(`${iso.slice(2)}Z`, 'latin1'))) : derEncode(DER_TAG.GENERALIZED_TIME, Uint8Array.from(Buffer.from(`${iso}Z`, 'latin1')));
}
