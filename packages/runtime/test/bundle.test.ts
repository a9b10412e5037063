import { encodeFrame, isFlareError } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { decodeJobBundle, encodeJobBundle } from '../src/protocol/bundle.js';

const te = new TextEncoder();

describe('job bundle (meta.json and job files as a message payload)', () => {
  it('round-trips meta.json bytes exactly, the model and every file', () => {
    const meta = te.encode('{ "name": "x" }\n');
    const files = new Map([
      ['b/run.py', te.encode('print(1)')],
      ['a.txt', new Uint8Array([0, 1, 2])],
    ]);
    const b = decodeJobBundle(encodeJobBundle({ meta, model: new Uint8Array([9, 9]), files }));
    expect(Buffer.from(b.meta).toString()).toBe('{ "name": "x" }\n');
    expect(Array.from(b.model!)).toEqual([9, 9]);
    expect([...b.files.keys()]).toEqual(['a.txt', 'b/run.py']);
    expect(Buffer.from(b.files.get('b/run.py')!).toString()).toBe('print(1)');
    expect(decodeJobBundle(encodeJobBundle({ meta, files: new Map() })).model).toBeUndefined();
  });

  it('refuses parts over their limits before copying anything, naming the part (E_RUNTIME_JOB_TOO_LARGE)', () => {
    const bytes = encodeJobBundle({ meta: new Uint8Array(10), files: new Map([['a', new Uint8Array(100)]]) });
    const err = (f: () => unknown): Error => {
      try {
        f();
      } catch (e) {
        return e as Error;
      }
      throw new Error('no error');
    };
    const meta = err(() => decodeJobBundle(bytes, { maxMetaBytes: 9 }));
    expect(isFlareError(meta, 'E_RUNTIME_JOB_TOO_LARGE')).toBe(true);
    expect(meta.message).toMatch(/meta\.json/);
    expect(err(() => decodeJobBundle(bytes, { maxJobFilesBytes: 99 })).message).toMatch(/custom\//);
    expect(isFlareError(err(() => decodeJobBundle(bytes, { maxJobFiles: 0 })), 'E_RUNTIME_JOB_TOO_LARGE')).toBe(true);
  });

  it('refuses a malformed bundle (E_RUNTIME_JOB_INVALID): not a frame, sizes that do not add up, unsafe or repeated names', () => {
    const bad = [
      new Uint8Array([1, 2, 3]),
      encodeFrame({ v: 1, meta: 5, files: [] }, new Uint8Array(4)),
      encodeFrame({ v: 1, meta: 0, files: [['../etc/passwd', 0]] }),
      encodeFrame({ v: 1, meta: 0, files: [['a/./b', 0]] }),
      encodeFrame({ v: 1, meta: 0, files: [['/abs', 0]] }),
      encodeFrame({ v: 1, meta: 0, files: [['a', 0], ['a', 0]] }),
      encodeFrame({ v: 1, meta: 0, files: [], extra: 1 }),
    ];
    for (const b of bad) {
      try {
        decodeJobBundle(b);
        expect.unreachable();
      } catch (e) {
        expect(isFlareError(e, 'E_RUNTIME_JOB_INVALID'), String(e)).toBe(true);
      }
    }
  });
});
