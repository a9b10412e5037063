// A minimal DER encoder (X.690) for the synthetic certificates of the test authority (internal). Only what
// certificates need: lengths, INTEGER, OID, strings, times, SEQUENCE/SET, context tags.

export function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  out.set(content, 1 + len.length);
  return out;
}

export const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
export const seq = (...items: Uint8Array[]): Uint8Array => tlv(0x30, concat(...items));
export const set = (...items: Uint8Array[]): Uint8Array => tlv(0x31, concat(...items));
export const ctx = (n: number, content: Uint8Array, constructed = true): Uint8Array => tlv((constructed ? 0xa0 : 0x80) | n, content);
export const octets = (b: Uint8Array): Uint8Array => tlv(0x04, b);
export const bits = (b: Uint8Array): Uint8Array => tlv(0x03, concat(new Uint8Array([0]), b));
export const ia5 = (s: string): Uint8Array => tlv(0x16, new Uint8Array(Buffer.from(s, 'latin1')));
export const utf8 = (s: string): Uint8Array => tlv(0x0c, new Uint8Array(Buffer.from(s, 'utf8')));
export const bool = (v: boolean): Uint8Array => tlv(0x01, new Uint8Array([v ? 0xff : 0]));
export const nul = (): Uint8Array => new Uint8Array([0x05, 0x00]);

/** A non-negative INTEGER from a number or big-endian bytes. */
export function int(v: number | bigint | Uint8Array): Uint8Array {
  let b: Uint8Array;
  if (v instanceof Uint8Array) b = v;
  else {
    let h = BigInt(v).toString(16);
    if (h.length % 2) h = `0${h}`;
    b = new Uint8Array(Buffer.from(h, 'hex'));
  }
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  b = b.subarray(i);
  return tlv(0x02, (b[0]! & 0x80) !== 0 ? concat(new Uint8Array([0]), b) : b);
}

export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const stack: number[] = [];
    let n = arc;
    do {
      stack.unshift(n & 0x7f);
      n = Math.floor(n / 128);
    } while (n > 0);
    for (let i = 0; i < stack.length - 1; i++) stack[i]! |= 0x80;
    out.push(...stack);
  }
  return tlv(0x06, new Uint8Array(out));
}

/** UTCTime before 2050, GeneralizedTime after (RFC 5280 4.1.2.5). */
export function time(d: Date): Uint8Array {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return d.getUTCFullYear() < 2050 ? tlv(0x17, new Uint8Array(Buffer.from(`${iso.slice(2)}Z`, 'latin1'))) : tlv(0x18, new Uint8Array(Buffer.from(`${iso}Z`, 'latin1')));
}

/** A Name from RDNs in order, each a [attribute OID, value] pair (UTF8String). */
export function name(rdns: ReadonlyArray<readonly [string, string]>): Uint8Array {
  return seq(...rdns.map(([type, value]) => set(seq(oid(type), utf8(value)))));
}
