import { encodeModel, model, tensor } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordReader, encodeRecord, type LearnerFrame } from '../../src/learners/protocol.js';

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

function read(bytes: Uint8Array, limit = 1 << 20, chunk = bytes.length): { frames: LearnerFrame[]; errors: Array<{ code: string; message: string }> } {
  const frames: LearnerFrame[] = [];
  const errors: Array<{ code: string; message: string }> = [];
  const r = new RecordReader(limit, (f) => frames.push(f), (e) => errors.push(e));
  for (let i = 0; i < bytes.length; i += chunk) r.push(bytes.subarray(i, i + chunk));
  return { frames, errors };
}

const result = { t: 'result', id: 3, kind: 'diff', steps: 9, metrics: { loss: 0.5 } };

describe('external learner records', () => {
  it('a record is u64 length | FLTS frame, with the payload 8-byte aligned', () => {
    const payload = encodeModel(model({ w: tensor(Float32Array.of(1, 2), [2]) }));
    const rec = concat(encodeRecord(result, [payload]));
    const view = Buffer.from(rec);
    expect(Number(view.readBigUInt64LE(0))).toBe(rec.length - 8);
    expect(view.subarray(8, 12).toString('latin1')).toBe('FLTS');
    expect(view[12]).toBe(1);
    const hlen = view.readUInt32LE(13);
    expect((9 + hlen) % 8).toBe(0);
    expect(JSON.parse(view.subarray(17, 17 + hlen).toString())).toEqual(result);
  });

  it('reassembles records split at any byte boundary', () => {
    const payload = encodeModel(model({ w: tensor(Float32Array.of(1, 2, 3), [3]) }));
    const bytes = concat([...encodeRecord({ t: 'hello', protocol: 1 }), ...encodeRecord(result, [payload])]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: bytes.length }), (chunk) => {
        const { frames, errors } = read(bytes, 1 << 20, chunk);
        expect(errors).toEqual([]);
        expect(frames.map((f) => f.header.t)).toEqual(['hello', 'result']);
        expect(Buffer.from(frames[1]!.payload).equals(Buffer.from(payload))).toBe(true);
      }),
      { numRuns: 60, seed: 2026120522 },
    );
  });

  it('refuses a record over the limit from its length alone (E_LEARNER_OVERSIZED)', () => {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(1n << 36n);
    expect(read(prefix, 1 << 20).errors).toMatchObject([{ code: 'E_LEARNER_OVERSIZED' }]);
    const rec = concat(encodeRecord(result, [new Uint8Array(2000)]));
    expect(read(rec, 1000).errors).toMatchObject([{ code: 'E_LEARNER_OVERSIZED' }]);
  });

  it('refuses text, a bare frame without length, a bad header and an unknown message (E_LEARNER_PROTOCOL), then reads nothing more', () => {
    const text = Buffer.from('Epoch 1/10 loss=0.3\n');
    expect(read(text).errors).toMatchObject([{ code: 'E_LEARNER_PROTOCOL' }]);
    expect(read(concat(encodeRecord(result)).subarray(8)).errors).toMatchObject([{ code: 'E_LEARNER_PROTOCOL' }]);
    const unknown = concat(encodeRecord({ t: 'shell', cmd: 'rm -rf /' }));
    expect(read(unknown).errors).toMatchObject([{ code: 'E_LEARNER_PROTOCOL', message: expect.stringContaining('E_CODEC_HEADER_SCHEMA') }]);
    const extraField = concat(encodeRecord({ ...result, admin: true }));
    expect(read(extraField).errors).toMatchObject([{ code: 'E_LEARNER_PROTOCOL' }]);
    const { frames, errors } = read(concat([...encodeRecord({ t: 'nope' }), ...encodeRecord({ t: 'hello', protocol: 1 })]));
    expect(errors).toHaveLength(1);
    expect(frames).toHaveLength(0);
  });

  it('accepts the names a client writes for non-finite metrics, so that the site can refuse them by code', () => {
    const { frames } = read(concat(encodeRecord({ t: 'result', id: 0, metrics: { a: 'NaN', b: '-Infinity' } })));
    expect(frames[0]!.header).toMatchObject({ metrics: { a: 'NaN', b: '-Infinity' } });
  });
});
