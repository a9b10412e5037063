import { AssertionError } from 'node:assert';
import { describe, expect, it } from 'vitest';
import { CodecError, decodeModel } from '../src/index.js';
import { expectFlareCode, expectFlareCodeAsync, flareMatchers } from '../src/testing/index.js';

expect.extend(flareMatchers);

const truncated = () => decodeModel(new Uint8Array(3));

describe('@flare/core/testing', () => {
  it('toThrowFlareCode passes on the right code and fails on another code, another error or no error', () => {
    expect(truncated).toThrowFlareCode('E_CODEC_TRUNCATED');
    expect(truncated).not.toThrowFlareCode('E_CODEC_MAGIC');
    expect(() => expect(truncated).toThrowFlareCode('E_CODEC_MAGIC')).toThrow(/expected a FlareError E_CODEC_MAGIC, got CodecError E_CODEC_TRUNCATED/);
    expect(() => expect(() => undefined).toThrowFlareCode('E_CODEC_MAGIC')).toThrow(/nothing was thrown/);
    expect(() =>
      expect(() => {
        throw new TypeError('bad');
      }).toThrowFlareCode('E_CODEC_MAGIC'),
    ).toThrow(/got TypeError: bad/);
    expect(() => expect(truncated).not.toThrowFlareCode('E_CODEC_TRUNCATED')).toThrow(/expected no FlareError E_CODEC_TRUNCATED/);
  });

  it('toThrowFlareCode refuses a function that returns a promise (an async refusal must be awaited)', () => {
    expect(() => expect(() => Promise.reject(new CodecError('E_CODEC_MAGIC', 'x'))).toThrowFlareCode('E_CODEC_MAGIC')).toThrow(/returned a promise/);
  });

  it('the async forms: .rejects.toThrowFlareCode and toRejectWithFlareCode', async () => {
    const failing = async () => truncated();
    await expect(failing()).rejects.toThrowFlareCode('E_CODEC_TRUNCATED');
    await expect(failing).toRejectWithFlareCode('E_CODEC_TRUNCATED');
    await expect(failing()).toRejectWithFlareCode('E_CODEC_TRUNCATED');
    await expect(expect(Promise.resolve(1)).toRejectWithFlareCode('E_CODEC_TRUNCATED')).rejects.toThrow(/nothing was thrown/);
    await expect(expect(failing).toRejectWithFlareCode('E_CODEC_MAGIC')).rejects.toThrow(/got CodecError E_CODEC_TRUNCATED/);
  });

  it('expectFlareCode and expectFlareCodeAsync return the error for further checks, or throw an AssertionError', async () => {
    const e = expectFlareCode(truncated, 'E_CODEC_TRUNCATED');
    expect(e).toBeInstanceOf(CodecError);
    expect(() => expectFlareCode(truncated, 'E_CODEC_MAGIC')).toThrow(AssertionError);
    expect(() => expectFlareCode(() => 1, 'E_CODEC_MAGIC')).toThrow(AssertionError);
    expect(() => expectFlareCode(async () => truncated(), 'E_CODEC_TRUNCATED')).toThrow(/returned a promise/);
    const a = await expectFlareCodeAsync(async () => truncated(), 'E_CODEC_TRUNCATED');
    expect(a.code).toBe('E_CODEC_TRUNCATED');
    await expect(expectFlareCodeAsync(Promise.resolve(), 'E_CODEC_TRUNCATED')).rejects.toThrow(AssertionError);
  });
});
