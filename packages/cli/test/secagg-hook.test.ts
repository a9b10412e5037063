import { describe, expect, it } from 'vitest';
import { SECAGG_EXIT_ENV, secaggExitPhase, secaggRecordHook } from '../src/poc/secagg-hook.js';

describe('secure-aggregation test hooks (FLARE_TEST_SECAGG_EXIT_AT, FLARE_TEST_SECAGG_RECORD)', () => {
  it('names the phase at which a site exits, only for the sites listed', () => {
    const env = { [SECAGG_EXIT_ENV]: 'site-2:masked-input, site-4:unmask' };
    expect(secaggExitPhase('site-2', env)).toBe('masked-input');
    expect(secaggExitPhase('site-4', env)).toBe('unmask');
    expect(secaggExitPhase('site-1', env)).toBeUndefined();
    expect(secaggExitPhase('site-1', {})).toBeUndefined();
  });

  it('refuses a malformed value, so a test cannot silently run without its kill', () => {
    expect(() => secaggExitPhase('site-1', { [SECAGG_EXIT_ENV]: 'site-2:masking' })).toThrow(RangeError);
    expect(() => secaggExitPhase('site-1', { [SECAGG_EXIT_ENV]: 'site-2' })).toThrow(RangeError);
    expect(() => secaggExitPhase('site-1', { [SECAGG_EXIT_ENV]: 'site-2:unmask:x' })).toThrow(RangeError);
  });

  it('records updates only when asked', () => {
    expect(secaggRecordHook('/nonexistent', {})).toBeUndefined();
    expect(secaggRecordHook('/nonexistent', { FLARE_TEST_SECAGG_RECORD: '1' })).toBeTypeOf('function');
  });
});
