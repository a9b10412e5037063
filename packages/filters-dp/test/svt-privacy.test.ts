import { isFlareError, model, tensor, type FilterContext } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { DP_SPENT_META, SVT_ACCOUNTANT_META, SVT_BUDGET_META, svtPrivacy } from '../src/index.js';
import { memoryPrivacyLedger } from '../src/testing.js';
import { epsilonSplit, releaseEpsilon, runSvt, type SvtNoise, type SvtParams } from '../src/svt-privacy.js';
import { seededRandom } from './helpers/seeded-random.js';

// Expectations from NVFlare's tests/unit_test/app_common/filters/svt_privacy_test.py at
// NVIDIA/NVFlare@f3b7c1bf (copied in ../shared/vectors/dp/nvflare_filter_cases.json); test names in the titles.

const ctx = (round = 0): FilterContext => ({ site: 's', job: 'j', round });

/** Replays FLARE's monkeypatched draws: Laplace noises in order, query noises in order, choice -> index 0. */
function stubNoise(laplace: number[], query: number[]): SvtNoise {
  return {
    laplace: (centre) => centre + laplace.shift()!,
    exceeds: (response, threshold) => response + query.shift()! >= threshold,
    below: () => 0,
  };
}

const params = (p: Partial<SvtParams>): SvtParams => ({ fraction: 1, epsilon: 2, noiseVar: 1, gamma: 1, tau: 0.5, replace: false, epsilonThreshold: 1, epsilonQuery: 1, ...p });

describe('SVT epsilon split and release epsilon', () => {
  it('test_compute_epsilon_split_uses_standard_ratio_by_default: (1.0, 4) -> 0.2, 0.8', () => {
    const [thr, q] = epsilonSplit(1.0, 4);
    expect(thr).toBeCloseTo(0.2, 9);
    expect(q).toBeCloseTo(0.8, 9);
  });

  it('test_compute_epsilon_split_honors_explicit_values: 0.25, 0.75', () => {
    expect(epsilonSplit(1.0, 4, 0.25, 0.75)).toEqual([0.25, 0.75]);
    expect(epsilonSplit(1.0, 4, 0.25)).toEqual([0.25, 0.75]);
    expect(() => epsilonSplit(1.0, 4, 0.5, 0.75)).toThrow(RangeError);
  });

  it('test_compute_release_epsilon_defaults_to_legacy_noise_scale: (4, 0.5) -> 2.0; explicit 3.0 wins', () => {
    expect(releaseEpsilon(4, 0.5)).toBeCloseTo(2.0, 9);
    expect(releaseEpsilon(4, 0.5, 3.0)).toBe(3.0);
  });
});

describe('runSvt (FLARE stubbed-draw cases)', () => {
  it('test_svt_privacy_clips_before_release_noise: clip(2.0) = 1.0, plus release noise 0.5 -> 1.5', () => {
    const r = runSvt(Float64Array.from([2.0]), new Uint8Array(1), params({}), stubNoise([0.0, 0.5], [0.0]));
    expect(r.values[0]).toBeCloseTo(1.5, 9);
  });

  it('test_svt_privacy_records_acceptance_passes: query noise -1 then +1 -> 2 passes', () => {
    const r = runSvt(Float64Array.from([0.2]), new Uint8Array(1), params({}), stubNoise([0.0, 0.0], [-1.0, 1.0]));
    expect(r.passes).toBe(2);
    expect(r.values[0]).toBeCloseTo(0.2, 9);
  });

  it('stops at the nUpload-th accepted value (Lyu et al. 2017 cutoff), querying nothing after it', () => {
    const query = [1, 1, 1, 1];
    const r = runSvt(Float64Array.from([0.1, 0.2, 0.3, 0.4]), new Uint8Array(4), params({ fraction: 0.5, tau: 0 }), stubNoise([0, 0, 0], query));
    expect(r.nUpload).toBe(2);
    expect(query).toHaveLength(2); // two queries answered, two never asked
    expect(r.values.filter((v) => v !== 0)).toHaveLength(2);
  });

  it('gives up after the pass bound when nothing reaches the threshold (E_DP_SVT_STALLED)', () => {
    const noise = { laplace: (c: number) => c, exceeds: () => false, below: () => 0 };
    let code: string | undefined;
    try {
      runSvt(Float64Array.from([0.1, 0.2]), new Uint8Array(2), params({ tau: 5 }), noise);
    } catch (e) {
      code = isFlareError(e) ? e.code : 'other';
    }
    expect(code).toBe('E_DP_SVT_STALLED');
  });
});

describe('svtPrivacy', () => {
  const layerA = () => Float32Array.from([0.2, -0.3, 0.4, -0.5]);
  const layerB = () => Float32Array.from([0.1, -0.2, 0.3, -0.4]);
  const weightDiff = (scalar: boolean) =>
    model(
      {
        layer_a: tensor(layerA()),
        layer_b: tensor(layerB(), [2, 2]),
        ...(scalar ? { scalar: tensor(Float32Array.from([7]), []) } : {}),
      },
      'diff',
      { NUM_STEPS_CURRENT_ROUND: 1 },
    );
  const big = { fraction: 0.5, epsilon: 200, noiseVar: 1e9, gamma: 1, tau: -1, replace: false, epsilonThreshold: 100, epsilonQuery: 100 };

  it('test_svt_privacy_selects_requested_number_without_replacement: exactly ceil(0.5·8) = 4 non-zero, shapes and float32 kept', async () => {
    const out = await svtPrivacy({ ...big, random: seededRandom('svt-select') }).apply(weightDiff(false), ctx());
    const a = out.params.get('layer_a')!;
    const b = out.params.get('layer_b')!;
    const nonzero = [...a.data, ...b.data].filter((v) => v !== 0).length;
    expect(nonzero).toBe(4);
    expect(a.shape).toEqual([4]);
    expect(b.shape).toEqual([2, 2]);
    expect(a.dtype).toBe('float32');
  });

  it('test_svt_privacy_zero_fraction_zeros_arrays_and_keeps_scalar', async () => {
    const out = await svtPrivacy({ ...big, fraction: 0, noiseVar: 1 }).apply(weightDiff(true), ctx());
    expect([...out.params.get('layer_a')!.data, ...out.params.get('layer_b')!.data].every((v) => v === 0)).toBe(true);
    expect(out.params.get('scalar')!.data[0]).toBe(7);
  });

  it('test_svt_privacy_counts_scalar_toward_upload_budget_but_preserves_scalar_value: 5 or 6 non-zero', async () => {
    const out = await svtPrivacy({ ...big, random: seededRandom('svt-scalar') }).apply(weightDiff(true), ctx());
    const all = [...out.params.get('layer_a')!.data, ...out.params.get('layer_b')!.data, ...out.params.get('scalar')!.data];
    expect([5, 6]).toContain(all.filter((v) => v !== 0).length);
    expect(out.params.get('scalar')!.data[0]).toBe(7);
  });

  it('test_svt_privacy_accountant_tracks_cumulative_budget_across_calls: 5.0 per call, 10.0 after two, 2 calls', async () => {
    const f = svtPrivacy({ fraction: 0.5, epsilon: 2, noiseVar: 1, gamma: 1, tau: -1, replace: false, epsilonThreshold: 0.5, epsilonQuery: 1.5, epsilonRelease: 3 });
    const first = await f.apply(model({ layer: tensor(Float32Array.from([0.2, -0.3, 0.4, -0.5])) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 1, current_round: 1 }), ctx(1));
    const second = await f.apply(model({ layer: tensor(Float32Array.from([0.3, -0.4, 0.5, -0.6])) }, 'diff', { NUM_STEPS_CURRENT_ROUND: 1, current_round: 2 }), ctx(2));
    const perCall = second.meta[SVT_BUDGET_META] as Record<string, number>;
    const cumulative = second.meta[SVT_ACCOUNTANT_META] as Record<string, number>;
    expect(perCall['epsilon_total']).toBeCloseTo(5.0, 9);
    expect(perCall['epsilon_threshold']).toBeCloseTo(0.5, 9);
    expect(perCall['epsilon_query']).toBeCloseTo(1.5, 9);
    expect(perCall['epsilon_release']).toBeCloseTo(3.0, 9);
    expect(perCall['round']).toBe(2);
    expect(cumulative['epsilon_total']).toBeCloseTo(10.0, 9);
    expect(cumulative['calls']).toBe(2);
    expect(cumulative['latest_round']).toBe(2);
    expect((first.meta[SVT_ACCOUNTANT_META] as Record<string, number>)['epsilon_total']).toBeCloseTo(5.0, 9);
  });

  it('test_svt_privacy_accountant_notes_scalar_passthrough', async () => {
    const f = svtPrivacy({ fraction: 0.5, epsilon: 2, noiseVar: 1, gamma: 1, tau: -1, replace: false, epsilonThreshold: 0.5, epsilonQuery: 1.5, epsilonRelease: 3 });
    const out = await f.apply(weightDiff(true), ctx());
    const perCall = out.meta[SVT_BUDGET_META] as Record<string, unknown>;
    expect(perCall['has_scalar_passthrough']).toBe(true);
    expect(perCall['note']).toMatch(/scalar passthrough/);
    expect((out.meta[SVT_ACCOUNTANT_META] as Record<string, unknown>)['note']).toMatch(/scalar passthrough/);
  });

  it('test_svt_privacy_uses_chunked_path_without_mutating_input: 4 of 8 released, input unchanged', async () => {
    const original = Float32Array.from({ length: 8 }, (_, i) => -0.8 + (1.6 * i) / 7);
    const data = original.slice();
    const out = await svtPrivacy({ ...big, random: seededRandom('svt-mutate') }).apply(model({ layer: tensor(data) }, 'diff'), ctx());
    expect([...out.params.get('layer')!.data].filter((v) => v !== 0)).toHaveLength(4);
    expect(data).toEqual(original);
  });

  it('releases values on the Laplace grid around the clipped value (discrete Laplace, no float artefacts)', async () => {
    const scale = (2 * 1 * 4) / 1; // 2·gamma·nUpload / epsilon_release
    const out = await svtPrivacy({ fraction: 1, epsilon: 1, epsilonRelease: 1, gamma: 1, tau: -10, replace: false, random: seededRandom('svt-grid') }).apply(
      model({ w: tensor(Float64Array.from([0.5, -2, 0.25, 3])) }, 'diff'),
      ctx(),
    );
    const g = scale / 128;
    for (const v of out.params.get('w')!.data as Float64Array) {
      // v = g·K around clip(w)/g; the clipped values 0.5, -1, 0.25, 1 are themselves multiples of g = 1/16.
      expect(Number.isInteger(v / g)).toBe(true);
    }
  });

  it('enforces a budget: pure-DP releases compose, and the one that would pass maxEpsilon is refused (E_DP_BUDGET_EXHAUSTED)', async () => {
    const f = svtPrivacy({ fraction: 0.5, epsilon: 2, noiseVar: 1, gamma: 1, tau: -1, replace: false, epsilonThreshold: 0.5, epsilonQuery: 1.5, epsilonRelease: 3, budget: { maxEpsilon: 12, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 's' }) } });
    const m = () => model({ layer: tensor(Float32Array.from([0.2, -0.3, 0.4, -0.5])) }, 'diff');
    const one = await f.apply(m(), ctx(0));
    expect((one.meta[DP_SPENT_META] as Record<string, number>)['epsilon']).toBeCloseTo(5, 4);
    const two = await f.apply(m(), ctx(1));
    expect((two.meta[DP_SPENT_META] as Record<string, number>)['epsilon']).toBeCloseTo(10, 4);
    let code: string | undefined;
    try {
      await f.apply(m(), ctx(2));
    } catch (e) {
      code = isFlareError(e) ? e.code : 'other';
    }
    expect(code).toBe('E_DP_BUDGET_EXHAUSTED');
  });

  it('rejects arguments FLARE rejects, at construction, with RangeError', () => {
    expect(() => svtPrivacy({ fraction: 2 })).toThrow(RangeError);
    expect(() => svtPrivacy({ epsilon: 1, epsilonThreshold: 0.5, epsilonQuery: 0.7 })).toThrow(RangeError);
    expect(() => svtPrivacy({ noiseVar: 0 })).toThrow(RangeError);
    expect(() => svtPrivacy({ gamma: -1 })).toThrow(RangeError);
  });
});
