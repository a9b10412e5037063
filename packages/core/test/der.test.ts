// The one DER reader and writer: X.690 examples, what "strict" refuses, and a fuzz suite (every byte string
// either reads or fails with E_CODEC_DER, nothing else; what the writer writes, the reader reads back).
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CodecError,
  DER_TAG,
  derBitString,
  derBoolean,
  derBooleanEncode,
  derChildren,
  derContent,
  derContext,
  derEncode,
  derExpect,
  derIa5String,
  derInteger,
  derNull,
  derOctetString,
  derOid,
  derOidEncode,
  derRaw,
  derRead,
  derReadAll,
  derSafeInteger,
  derSequence,
  derSet,
  derTime,
  derTimeEncode,
  derUnsigned,
  derUtf8String,
} from '../src/index.js';

const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const refuses = (fn: () => unknown, detail?: RegExp): void => {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(CodecError);
  expect((error as CodecError).code).toBe('E_CODEC_DER');
  if (detail) expect((error as Error).message).toMatch(detail);
};
const readOid = (h: string): string => {
  const b = bytes(h);
  return derOid(b, derReadAll(b));
};

describe('DER vectors', () => {
  it('X.690 8.19.5 example: OID {2 999 3} is 06 03 88 37 03; RFC 5280 OIDs read and write', () => {
    expect(readOid('0603883703')).toBe('2.999.3');
    expect(hex(derOidEncode('2.999.3'))).toBe('0603883703');
    expect(readOid('06092a864886f70d01010b')).toBe('1.2.840.113549.1.1.11'); // sha256WithRSAEncryption
    expect(hex(derOidEncode('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302'); // ecdsa-with-SHA256
    expect(readOid('0603551d14')).toBe('2.5.29.20'); // id-ce-cRLNumber
  });

  it('X.690 8.1.3: short and long definite lengths, minimal', () => {
    expect(hex(derOctetString(new Uint8Array(127))).slice(0, 4)).toBe('047f');
    expect(hex(derOctetString(new Uint8Array(128))).slice(0, 6)).toBe('048180');
    expect(hex(derOctetString(new Uint8Array(256))).slice(0, 8)).toBe('04820100');
    const long = derOctetString(new Uint8Array(70_000));
    expect(derReadAll(long)).toEqual({ tag: 4, start: 0, body: 5, end: 70_005 });
  });

  it('INTEGER (X.690 8.3): minimal two\'s complement, non-negative', () => {
    expect(hex(derInteger(0))).toBe('020100');
    expect(hex(derInteger(127))).toBe('02017f');
    expect(hex(derInteger(128))).toBe('02020080');
    expect(hex(derInteger(256))).toBe('02020100');
    expect(hex(derInteger(2n ** 64n))).toBe('0209010000000000000000');
    expect(hex(derInteger(bytes('000001')))).toBe('020101');
    const big = derInteger(2n ** 159n);
    expect(derUnsigned(big, derReadAll(big))).toBe(2n ** 159n);
    const safe = derInteger(Number.MAX_SAFE_INTEGER);
    expect(derSafeInteger(safe, derReadAll(safe))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('BOOLEAN (X.690 11.1), NULL, strings, context tags, SET and SEQUENCE', () => {
    expect(hex(derBooleanEncode(true))).toBe('0101ff');
    expect(hex(derNull())).toBe('0500');
    expect(hex(derUtf8String('é'))).toBe('0c02c3a9');
    expect(hex(derIa5String('a@b'))).toBe('1603614062');
    expect(hex(derBitString(bytes('ff')))).toBe('030200ff');
    expect(hex(derContext(0, derInteger(2)))).toBe('a003020102');
    expect(hex(derContext(1, bytes('ab'), false))).toBe('8101ab');
    expect(hex(derSet(derNull()))).toBe('31020500');
    const seq = derSequence(derInteger(1), derBooleanEncode(false), derNull());
    const top = derReadAll(seq);
    const kids = derChildren(seq, top);
    expect(kids.map((k) => k.tag)).toEqual([DER_TAG.INTEGER, DER_TAG.BOOLEAN, DER_TAG.NULL]);
    expect(derBoolean(seq, kids[1]!)).toBe(false);
    expect(hex(derContent(seq, kids[0]!))).toBe('01');
    expect(hex(derRaw(seq, kids[0]!))).toBe('020101');
    expect(derExpect(kids[2], DER_TAG.NULL, 'NULL')).toBe(kids[2]);
  });

  it('RFC 5280 4.1.2.5 times: UTCTime before 2050, GeneralizedTime after, both read back', () => {
    for (const iso of ['1999-12-31T23:59:59.000Z', '2026-05-01T00:00:00.000Z', '2049-12-31T23:59:59.000Z', '2050-01-01T00:00:00.000Z', '9999-12-31T23:59:59.000Z']) {
      const t = derTimeEncode(new Date(iso));
      expect(derTime(t, derReadAll(t)).toISOString()).toBe(iso);
    }
    expect(hex(derTimeEncode(new Date('2026-05-01T00:00:00Z')))).toBe(hex(Buffer.concat([Buffer.from([0x17, 13]), Buffer.from('260501000000Z')])));
  });

  it('reads a SubjectPublicKeyInfo written by OpenSSL (RFC 5480 2.1)', () => {
    const spki = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'der' });
    const b = new Uint8Array(spki);
    const [alg, key] = derChildren(b, derReadAll(b));
    const [ecPublicKey, curve] = derChildren(b, derExpect(alg, DER_TAG.SEQUENCE, 'AlgorithmIdentifier'));
    expect(derOid(b, ecPublicKey!)).toBe('1.2.840.10045.2.1');
    expect(derOid(b, curve!)).toBe('1.2.840.10045.3.1.7');
    expect(derContent(b, derExpect(key, DER_TAG.BIT_STRING, 'subjectPublicKey'))[1]).toBe(4); // uncompressed point
  });
});

describe('DER strictness: what is refused (E_CODEC_DER)', () => {
  it('non-minimal lengths: long form below 128, leading zero length octets', () => {
    refuses(() => derRead(bytes('04810100')), /non-minimal length/); // 1 in long form
    refuses(() => derRead(bytes('0482000100')), /non-minimal length/); // leading zero octet
    refuses(() => derRead(bytes('04817f' + '00'.repeat(127))), /non-minimal length/);
  });
  it('indefinite lengths, lengths of more than four octets, multi-byte tags', () => {
    refuses(() => derRead(bytes('30800000')), /indefinite/);
    refuses(() => derRead(bytes('04850100000000')), /length too large/);
    refuses(() => derRead(bytes('1f2a0100')), /multi-byte tag/);
  });
  it('truncation anywhere, children that overrun their parent, trailing bytes', () => {
    refuses(() => derRead(bytes('04')), /truncated header/);
    refuses(() => derRead(bytes('0482')), /truncated length/);
    refuses(() => derRead(bytes('040301')), /truncated contents/);
    const seq = bytes('3003020201'); // an INTEGER claiming 2 octets inside a 3-octet SEQUENCE with 1 left
    refuses(() => derChildren(seq, derReadAll(seq)), /truncated/);
    refuses(() => derReadAll(bytes('050000')), /trailing bytes/);
  });
  it('OIDs: empty, unterminated, non-minimal arcs, arcs at or above 2^53 (no overflow)', () => {
    refuses(() => readOid('0600'), /malformed OID/);
    refuses(() => readOid('06022a86'), /malformed OID/);
    refuses(() => readOid('06032a8001'), /non-minimal OID arc/);
    // 2^53 + 1 as base-128 arc: exact arithmetic would lose it; it must be refused, not rounded.
    refuses(() => readOid('060a2a' + '9080808080808080' + '01'), /OID arc too large/);
    refuses(() => readOid('060b2a' + 'ffffffffffffffffff' + '7f'), /OID arc too large/);
    expect(readOid('06092a' + '8fffffffffffff' + '7f')).toBe(`1.2.${Number.MAX_SAFE_INTEGER}`);
  });
  it('INTEGERs: empty, negative, non-minimal; BOOLEAN other than 00/FF; malformed times', () => {
    const int = (h: string) => {
      const b = bytes(h);
      return derUnsigned(b, derReadAll(b));
    };
    refuses(() => int('0200'), /empty INTEGER/);
    refuses(() => int('020180'), /negative/);
    refuses(() => int('02020001'), /non-minimal INTEGER/);
    const big = derInteger(2n ** 60n);
    refuses(() => derSafeInteger(big, derReadAll(big)), /too large/);
    const b = bytes('010101');
    refuses(() => derBoolean(b, derReadAll(b)), /neither/);
    const time = (s: string, tag = 0x17) => {
      const t = derEncode(tag, Uint8Array.from(Buffer.from(s, 'latin1')));
      return derTime(t, derReadAll(t));
    };
    refuses(() => time('261301000000Z'), /out of range/); // month 13
    refuses(() => time('260230000000Z'), /out of range/); // 30 February
    refuses(() => time('260501000060Z'), /out of range/);
    refuses(() => time('2605010000Z'), /RFC 5280 form/); // no seconds
    refuses(() => time('260501000000+0100'), /RFC 5280 form/);
    refuses(() => time('20260501000000.5Z', 0x18), /RFC 5280 form/);
    refuses(() => time('26050100000aZ'), /malformed time/);
  });
  it('the writer refuses what it cannot write as DER (RangeError)', () => {
    expect(() => derInteger(-1)).toThrow(RangeError);
    expect(() => derInteger(1.5)).toThrow(RangeError);
    expect(() => derOidEncode('1')).toThrow(RangeError);
    expect(() => derOidEncode('3.1')).toThrow(RangeError);
    expect(() => derOidEncode('1.40')).toThrow(RangeError);
    expect(() => derOidEncode('1.2.x')).toThrow(RangeError);
    expect(() => derEncode(0x1f, new Uint8Array())).toThrow(RangeError);
    expect(() => derContext(31, new Uint8Array())).toThrow(RangeError);
    expect(() => derIa5String('é')).toThrow(RangeError);
    expect(() => derTimeEncode(new Date('1949-01-01T00:00:00Z'))).toThrow(RangeError);
  });
});

/** Reads everything in `buf` as a tree (a bounded depth): the parse a verifier would do. */
function walk(buf: Uint8Array, node = derReadAll(buf), depth = 0): number {
  let n = 1;
  if (node.tag & 0x20 && depth < 32) for (const c of derChildren(buf, node)) n += walk(buf, c, depth + 1);
  if (node.tag === DER_TAG.OID) derOid(buf, node);
  if (node.tag === DER_TAG.INTEGER) derUnsigned(buf, node);
  if (node.tag === DER_TAG.UTC_TIME || node.tag === DER_TAG.GENERALIZED_TIME) derTime(buf, node);
  if (node.tag === DER_TAG.BOOLEAN) derBoolean(buf, node);
  return n;
}

const element: fc.Arbitrary<Uint8Array> = fc.letrec<{ el: Uint8Array }>((tie) => ({
  el: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.bigInt({ min: 0n, max: 2n ** 200n }).map(derInteger),
    fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { minLength: 1, maxLength: 8 }).map((arcs) => derOidEncode(`1.3.${arcs.join('.')}`)),
    fc.uint8Array({ maxLength: 300 }).map(derOctetString),
    fc.boolean().map(derBooleanEncode),
    fc.date({ min: new Date('1950-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map(derTimeEncode),
    fc.array(tie('el'), { maxLength: 5 }).map((els) => derSequence(...els)),
  ),
})).el;

describe('DER fuzz (fast-check)', () => {
  it('any byte string either reads or fails with E_CODEC_DER, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
        try {
          walk(b);
        } catch (e) {
          if (!(e instanceof CodecError) || e.code !== 'E_CODEC_DER') throw e;
        }
      }),
      { numRuns: 3000, seed: 20260502 },
    );
  });

  it('what the writer writes, the reader reads back exactly; every one-byte change stays within E_CODEC_DER', () => {
    fc.assert(
      fc.property(element, fc.nat(), fc.integer({ min: 1, max: 255 }), (el, at, xor) => {
        expect(walk(el)).toBeGreaterThanOrEqual(1);
        const damaged = Uint8Array.from(el);
        damaged[at % damaged.length]! ^= xor;
        try {
          walk(damaged);
        } catch (e) {
          if (!(e instanceof CodecError) || e.code !== 'E_CODEC_DER') throw e;
        }
      }),
      { numRuns: 1000, seed: 20260503 },
    );
  });

  it('non-minimal re-encodings of valid elements are always refused', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 2 }), (content, zeros) => {
        // The same OCTET STRING with its length in the long form, padded with `zeros` leading zero octets.
        const len = content.length;
        const minimal: number[] = [];
        for (let v = len; v > 0; v = Math.floor(v / 256)) minimal.unshift(v % 256);
        if (minimal.length === 0) minimal.push(0);
        const lengthBytes = [...new Array<number>(zeros).fill(0), ...minimal];
        if (len >= 128 && zeros === 0) return; // that is the minimal form itself
        refuses(() => derRead(Uint8Array.from([0x04, 0x80 | lengthBytes.length, ...lengthBytes, ...content])));
      }),
      { numRuns: 500, seed: 20260504 },
    );
  });
});
