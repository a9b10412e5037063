import { isFlareError, model, tensor, type FilterContext } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { percentilePrivacy } from '../src/index.js';
import { numpyPercentile } from '../src/percentile-privacy.js';

const ctx: FilterContext = { site: 's', job: 'j', round: 0 };

describe('numpyPercentile', () => {
  it('equals numpy.percentile (linear) on float64 data', () => {
    // numpy 2.4: np.percentile([3,1,4,1,5,9,2,6,5,3,5], p)
    const cases: Array<[number, number]> = [[0, 1], [10, 1], [25, 2.5], [33.3, 3], [50, 4], [90, 6], [99.9, 8.970000000000006], [100, 9]];
    for (const [p, want] of cases) {
      expect(numpyPercentile(Float64Array.from([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]), p, false)).toBe(want);
    }
  });

  it('equals numpy.percentile on float32 data, rounding as numpy does', () => {
    // np.percentile(np.array([.05,.4,.1,.2,.02,.6], dtype=np.float32), p)
    for (const [p, want] of [[10, 0.03500000014901161], [50, 0.15000000596046448], [70, 0.30000001192092896]] as const) {
      expect(numpyPercentile(Float32Array.from([0.05, 0.4, 0.1, 0.2, 0.02, 0.6]), p, true)).toBe(want);
    }
  });

  it('selects correctly on large and adversarially ordered inputs', () => {
    const n = 100_001;
    const sorted = Float64Array.from({ length: n }, (_, i) => i);
    const organ = Float64Array.from({ length: n }, (_, i) => (i % 2 === 0 ? i : n - i));
    expect(numpyPercentile(sorted.slice(), 50, false)).toBe(50_000);
    expect(numpyPercentile(organ.slice(), 50, false)).toBe([...organ].sort((a, b) => a - b)[50_000]);
  });
});

describe('percentilePrivacy', () => {
  it('vectors/dp nvflare_filter_cases.json derived_percentile_privacy: percentile 50, gamma 0.3', async () => {
    // Derived from nvflare/app_common/filters/percentile_privacy.py: |w| percentile 50 = 0.15; |w| < 0.15 -> 0;
    // clip to ±0.3.
    const m = model({ w: tensor(Float64Array.from([0.05, -0.4, 0.1, 0.2, -0.02, 0.6])) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 1 });
    const out = await percentilePrivacy({ percentile: 50, gamma: 0.3 }).apply(m, ctx);
    const got = Array.from(out.params.get('w')!.data as Float64Array);
    [0, -0.3, 0, 0.2, 0, 0.3].forEach((v, i) => expect(Math.abs(got[i]! - v)).toBeLessThan(1e-12));
  });

  it('works per local step: divides by NUM_STEPS_CURRENT_ROUND, then multiplies back', async () => {
    const m = model({ w: tensor(Float64Array.from([0.1, -0.8, 0.2, 0.4, -0.04, 1.2])) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 2 });
    const out = await percentilePrivacy({ percentile: 50, gamma: 0.3 }).apply(m, ctx);
    const got = Array.from(out.params.get('w')!.data as Float64Array);
    [0, -0.6, 0, 0.4, 0, 0.6].forEach((v, i) => expect(Math.abs(got[i]! - v)).toBeLessThan(1e-12));
  });

  it("uses FLARE's defaults (percentile 10, gamma 0.01), keeps float32 and scalars, and does not mutate the input", async () => {
    const data = Float32Array.from({ length: 100 }, (_, i) => (i - 50) / 1000);
    const m = model({ w: tensor(data, [10, 10]), s: tensor(Float32Array.from([7]), []) }, 'full');
    const copy = data.slice();
    const out = await percentilePrivacy().apply(m, ctx);
    expect(data).toEqual(copy);
    const w = out.params.get('w')!;
    expect(w.dtype).toBe('float32');
    expect(w.shape).toEqual([10, 10]);
    const v = w.data as Float32Array;
    expect(Math.max(...v)).toBeLessThanOrEqual(Math.fround(0.01));
    // The 10th percentile of |w| is 0.005; |w| < 0.005 holds for 0 and ±0.001 .. ±0.004.
    expect(v.filter((x) => x === 0).length).toBe(9);
    expect(out.params.get('s')!.data[0]).toBe(7);
  });

  it('passes kinds it was told not to filter unchanged (FLARE data_kinds)', async () => {
    const m = model({ w: tensor(Float32Array.from([1, 2])) }, 'full');
    expect(await percentilePrivacy({ kinds: ['diff'] }).apply(m, ctx)).toBe(m);
  });

  it('refuses integer tensors, non-finite values and bad NUM_STEPS (E_DP_UNSUPPORTED_DTYPE, E_DP_NON_FINITE, E_DP_BAD_META)', async () => {
    const code = async (f: () => unknown) => {
      try {
        await f();
      } catch (e) {
        return isFlareError(e) ? e.code : 'other';
      }
      return undefined;
    };
    const f = percentilePrivacy();
    expect(await code(() => f.apply(model({ w: tensor(Int32Array.from([1])) }, 'diff'), ctx))).toBe('E_DP_UNSUPPORTED_DTYPE');
    expect(await code(() => f.apply(model({ w: tensor(Float32Array.from([Number.NaN])) }, 'diff'), ctx))).toBe('E_DP_NON_FINITE');
    expect(await code(() => f.apply(model({ w: tensor(Float32Array.from([1])) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 0 }), ctx))).toBe('E_DP_BAD_META');
  });

  it('rejects arguments FLARE would silently ignore, with RangeError', () => {
    expect(() => percentilePrivacy({ percentile: 101 })).toThrow(RangeError);
    expect(() => percentilePrivacy({ gamma: 0 })).toThrow(RangeError);
  });
});
