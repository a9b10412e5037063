import { describe, expect, it } from 'vitest';
import { RUNTIME_DEFAULTS, resolveRuntimeLimits } from '../src/defaults.js';

describe('RUNTIME_DEFAULTS', () => {
  it('fills every limit the caller leaves out; a site never gives up by default', () => {
    const l = resolveRuntimeLimits({ heartbeatMs: 100 });
    expect(l.heartbeatMs).toBe(100);
    expect(l.deployWaitMs).toBe(RUNTIME_DEFAULTS.deployWaitMs);
    expect(l.giveUpAfterMs).toBe(Infinity);
  });

  it('refuses unknown keys, non-positive, fractional and infinite values where they make no sense', () => {
    expect(() => resolveRuntimeLimits({ heartbeatMS: 1 } as never)).toThrow(TypeError);
    for (const v of [0, -1, 1.5, Number.NaN, Infinity]) expect(() => resolveRuntimeLimits({ deployWaitMs: v }), String(v)).toThrow(RangeError);
    expect(resolveRuntimeLimits({ giveUpAfterMs: Infinity }).giveUpAfterMs).toBe(Infinity);
    expect(() => resolveRuntimeLimits({ reconnectInitialMs: 60_000, reconnectMaxMs: 1000 })).toThrow(RangeError);
  });
});
