import { describe, expect, it } from 'vitest';
import {
  AggregatorError,
  AuthError,
  CodecError,
  ERROR_AREAS,
  FileError,
  FlareError,
  FlareRuntimeError,
  PkiError,
  TransportError,
  flareErrorFromCode,
  toFlareError,
} from '../src/index.js';
import { areaClassOf } from '../src/errors/from-code.js';

describe('flareErrorFromCode', () => {
  it('gives the area subclass of the catalog that defines the code, not a prefix guess', () => {
    expect(flareErrorFromCode('E_AUTH_REPLAY', 'x')).toBeInstanceOf(AuthError);
    // pki owns codes with many prefixes: E_KIT_*, E_CERT_*, E_CA_*
    expect(flareErrorFromCode('E_KIT_TAMPERED', 'x')).toBeInstanceOf(PkiError);
    expect(flareErrorFromCode('E_CA_STATE_MISSING', 'x')).toBeInstanceOf(PkiError);
    expect(flareErrorFromCode('E_AGG_ROUND', 'x')).toBeInstanceOf(AggregatorError);
    expect(flareErrorFromCode('E_FILE_WRITE', 'x')).toBeInstanceOf(FileError);
    const cause = new Error('low');
    const e = flareErrorFromCode('E_CODEC_TRUNCATED', 'cut short', { cause });
    expect(e).toBeInstanceOf(CodecError);
    expect(e.name).toBe('CodecError');
    expect(e.code).toBe('E_CODEC_TRUNCATED');
    expect(e.message).toBe('cut short');
    expect(e.cause).toBe(cause);
  });

  it('every code of every catalog maps to an area subclass (a new catalog needs its class in from-code.ts)', () => {
    for (const [title, catalog] of ERROR_AREAS) {
      for (const code of Object.keys(catalog)) {
        const Area = areaClassOf(code);
        expect(Area, `${title}: ${code}`).toBeDefined();
        expect(Area, code).not.toBe(FlareError);
        expect(flareErrorFromCode(code as never, 'm')).toBeInstanceOf(Area!);
      }
    }
  });

  it('refuses a string that is no catalog code with a RangeError', () => {
    expect(() => flareErrorFromCode('E_NOT_A_CODE' as never, 'x')).toThrow(RangeError);
  });
});

describe('toFlareError', () => {
  it('returns a FlareError unchanged', () => {
    const e = new TransportError('E_TRANSPORT_CLOSED', 'gone');
    expect(toFlareError(e, 'E_RUNTIME_TASK_FAILED')).toBe(e);
  });

  it('rebuilds a refusal read from the wire (a plain object with a catalog code) as its area class', () => {
    const wire = { code: 'E_AUTH_SESSION_REVOKED', message: 'revoked by the server' };
    const e = toFlareError(wire, 'E_RUNTIME_PROTOCOL');
    expect(e).toBeInstanceOf(AuthError);
    expect(e.code).toBe('E_AUTH_SESSION_REVOKED');
    expect(e.message).toBe('revoked by the server');
    expect(e.cause).toBe(wire);
  });

  it('wraps anything else as the fallback and keeps it as the cause (a system error keeps its own code there)', () => {
    const enoent = Object.assign(new Error('ENOENT: no such file, open /x'), { code: 'ENOENT' });
    const e = toFlareError(enoent, 'E_RUNTIME_JOB_INVALID');
    expect(e).toBeInstanceOf(FlareRuntimeError);
    expect(e.code).toBe('E_RUNTIME_JOB_INVALID');
    expect(e.message).toContain('ENOENT');
    expect(e.cause).toBe(enoent);
    expect(toFlareError('just a string', 'E_RUNTIME_TASK_FAILED').message).toBe('just a string');
    expect(toFlareError(undefined, 'E_RUNTIME_TASK_FAILED').message).toBe('undefined');
    expect(toFlareError({ code: 'E_NOT_OURS' }, 'E_RUNTIME_TASK_FAILED').code).toBe('E_RUNTIME_TASK_FAILED');
  });

  it('uses the given message instead of the foreign one, and cuts long foreign messages', () => {
    expect(toFlareError(new Error('secret path /home/x'), 'E_RUNTIME_TASK_FAILED', 'the task failed').message).toBe('the task failed');
    expect(toFlareError(new Error('x'.repeat(5000)), 'E_RUNTIME_TASK_FAILED').message.length).toBeLessThanOrEqual(1001);
  });
});
