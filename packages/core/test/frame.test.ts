import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decodeFrame, encodeFrame, FlareError, type CodecErrorCode } from '../src/index.js';
import { expectFlareCode } from '../src/testing/index.js';

const Header = z.strictObject({ type: z.literal('task'), round: z.int().nonnegative(), job: z.string().max(64) });

function withHeaderText(text: string, payload = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(text);
  const f = encodeFrame({}, payload);
  const out = new Uint8Array(9 + json.length + payload.length);
  out.set(f.subarray(0, 5));
  new DataView(out.buffer).setUint32(5, json.length, true);
  out.set(json, 9);
  out.set(payload, 9 + json.length);
  return out;
}

describe('encodeFrame / decodeFrame', () => {
  it('roundtrips header and payload (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1000 }), fc.string({ maxLength: 64 }), fc.uint8Array({ maxLength: 512 }), (round, job, payload) => {
        const f = decodeFrame(encodeFrame({ type: 'task', round, job }, payload), Header);
        expect(f.header).toEqual({ type: 'task', round, job });
        expect([...f.payload]).toEqual([...payload]);
      }),
      { seed: 2026120511 },
    );
  });

  const good = encodeFrame({ type: 'task', round: 1, job: 'j' }, new Uint8Array(10));
  const cases: Array<[string, () => Uint8Array, CodecErrorCode, object?]> = [
    ['shorter than the prefix', () => good.subarray(0, 8), 'E_CODEC_TRUNCATED'],
    ['wrong magic', () => good.map((b, i) => (i === 0 ? 0x47 : b)), 'E_CODEC_MAGIC'],
    ['unknown version', () => good.map((b, i) => (i === 4 ? 9 : b)), 'E_CODEC_VERSION'],
    ['header length beyond the frame', () => good.subarray(0, 20), 'E_CODEC_TRUNCATED'],
    ['header over 64 KiB (default limit)', () => withHeaderText(`{"type":"task","round":1,"job":"${'x'.repeat(70_000)}"}`), 'E_CODEC_TOO_LARGE'],
    ['payload over the limit', () => good, 'E_CODEC_TOO_LARGE', { maxBytes: 5 }],
    ['header not JSON', () => withHeaderText('{type: task}'), 'E_CODEC_HEADER_JSON'],
    ['duplicate header key', () => withHeaderText('{"type":"task","round":1,"round":2,"job":"j"}'), 'E_CODEC_DUPLICATE'],
    ['__proto__ in the header', () => withHeaderText('{"type":"task","round":1,"job":"j","__proto__":{}}'), 'E_CODEC_FORBIDDEN_KEY'],
    ['unknown field', () => encodeFrame({ type: 'task', round: 1, job: 'j', admin: true }), 'E_CODEC_HEADER_SCHEMA'],
    ['missing field', () => encodeFrame({ type: 'task', round: 1 }), 'E_CODEC_HEADER_SCHEMA'],
    ['wrong type', () => encodeFrame({ type: 'task', round: -1, job: 'j' }), 'E_CODEC_HEADER_SCHEMA'],
  ];
  it.each(cases)('refuses %s', (_t, bytes, code, limits) => {
    expectFlareCode(() => decodeFrame(bytes(), Header, limits), code);
  });

  it('fuzz: 10,000 mutated frames only ever throw FlareError', () => {
    const seeds = [
      encodeFrame({ type: 'task', round: 3, job: 'job-1' }, new Uint8Array(64).fill(7)),
      encodeFrame({ type: 'task', round: 0, job: '' }),
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { minLength: 1, maxLength: 8 }),
        (seed, edits) => {
          let bytes = seed.slice();
          for (const [at, value, op] of edits) {
            const i = at % (bytes.length + 1);
            if (op === 'set' && i < bytes.length) bytes[i] = value;
            else if (op === 'cut') bytes = bytes.subarray(0, i);
            else bytes = Uint8Array.from([...bytes.subarray(0, i), value, ...bytes.subarray(i)]);
          }
          try {
            decodeFrame(bytes, Header);
          } catch (e) {
            expect(e).toBeInstanceOf(FlareError);
          }
        },
      ),
      { numRuns: 10_000, seed: 2026120512 },
    );
  });
});
