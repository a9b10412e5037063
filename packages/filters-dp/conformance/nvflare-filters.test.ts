// Conformance: the FLARE-parity filters against ../shared/vectors/dp/nvflare_filter_cases.json (expectations of
// NVFlare's tests/unit_test/app_common/filters/svt_privacy_test.py and one derived PercentilePrivacy case).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { model, tensor } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { percentilePrivacy, SVT_ACCOUNTANT_META, SVT_BUDGET_META, svtPrivacy } from '../src/index.js';
import { epsilonSplit, releaseEpsilon, runSvt, type SvtNoise } from '../src/svt-privacy.js';

const here = dirname(fileURLToPath(import.meta.url));
const vectors = process.env['FLARE_VECTORS'] ?? resolve(here, '../../..', '../shared/vectors');

interface FilterCase {
  readonly id: string;
  readonly params?: Record<string, number | boolean>;
  readonly inputs?: Record<string, number[] | number>;
  readonly expected: unknown;
  readonly tolerance?: number;
}
const file = JSON.parse(readFileSync(resolve(vectors, 'dp/nvflare_filter_cases.json'), 'utf8')) as { cases: FilterCase[]; derived: FilterCase[] };
const byId = (id: string) => {
  const c = [...file.cases, ...file.derived].find((x) => x.id === id);
  if (c === undefined) throw new Error(`case ${id} is missing from nvflare_filter_cases.json`);
  return c;
};

const svtParams = (p: Record<string, number | boolean>) => ({
  fraction: Number(p['fraction']),
  epsilon: Number(p['epsilon']),
  noiseVar: Number(p['noise_var']),
  gamma: Number(p['gamma']),
  tau: Number(p['tau']),
  replace: Boolean(p['replace']),
  epsilonThreshold: p['epsilon_threshold'] as number | undefined,
  epsilonQuery: p['epsilon_query'] as number | undefined,
  epsilonRelease: p['epsilon_release'] as number | undefined,
});
const stub = (laplace: number[], query: number[]): SvtNoise => ({
  laplace: (c) => c + laplace.shift()!,
  exceeds: (r, t) => r + query.shift()! >= t,
  below: () => 0,
});

describe('nvflare_filter_cases.json', () => {
  it('svt_epsilon_split_default and svt_epsilon_split_explicit', () => {
    const d = byId('svt_epsilon_split_default').expected as Record<string, number>;
    const [thr, q] = epsilonSplit(1.0, 4);
    expect(Math.abs(thr - d['epsilon_threshold']!)).toBeLessThan(1e-9);
    expect(Math.abs(q - d['epsilon_query']!)).toBeLessThan(1e-9);
    const e = byId('svt_epsilon_split_explicit').expected as Record<string, number>;
    expect(epsilonSplit(1.0, 4, 0.25, 0.75)).toEqual([e['epsilon_threshold'], e['epsilon_query']]);
  });

  it('svt_release_epsilon_legacy and svt_release_epsilon_explicit', () => {
    expect(Math.abs(releaseEpsilon(4, 0.5) - (byId('svt_release_epsilon_legacy').expected as number))).toBeLessThan(1e-9);
    expect(releaseEpsilon(4, 0.5, 3.0)).toBe(byId('svt_release_epsilon_explicit').expected);
  });

  it('svt_clip_before_release_noise', () => {
    const c = byId('svt_clip_before_release_noise');
    const r = runSvt(Float64Array.from(c.inputs!['layer'] as number[]), new Uint8Array(1), svtParams(c.params!), stub([0.0, 0.5], [0.0]));
    expect(Math.abs(r.values[0]! - (c.expected as { layer: number[] }).layer[0]!)).toBeLessThan(1e-9);
  });

  it('svt_acceptance_passes', () => {
    const c = byId('svt_acceptance_passes');
    const r = runSvt(Float64Array.from(c.inputs!['layer'] as number[]), new Uint8Array(1), svtParams(c.params!), stub([0.0, 0.0], [-1.0, 1.0]));
    expect(r.passes).toBe((c.expected as Record<string, number>)['meta.svt_privacy_budget.acceptance_passes']);
  });

  it('svt_accountant_two_calls', async () => {
    const c = byId('svt_accountant_two_calls');
    const f = svtPrivacy(svtParams(c.params!));
    const ctx = { site: 's', job: 'j', round: 0 };
    const first = await f.apply(model({ layer: tensor(Float32Array.from(c.inputs!['call1'] as number[])) }, 'diff'), ctx);
    const second = await f.apply(model({ layer: tensor(Float32Array.from(c.inputs!['call2'] as number[])) }, 'diff'), ctx);
    const want = c.expected as Record<string, number>;
    expect(Math.abs((first.meta[SVT_BUDGET_META] as Record<string, number>)['epsilon_total']! - want['per_call_epsilon_total']!)).toBeLessThan(1e-9);
    const cumulative = second.meta[SVT_ACCOUNTANT_META] as Record<string, number>;
    expect(Math.abs(cumulative['epsilon_total']! - want['cumulative_after_2']!)).toBeLessThan(1e-9);
    expect(cumulative['calls']).toBe(want['ledger_len']);
  });

  it('svt_zero_fraction and svt_select_count_without_replacement', async () => {
    const ctx = { site: 's', job: 'j', round: 0 };
    const m = () => model({ a: tensor(Float32Array.from([0.2, -0.3, 0.4, -0.5])), b: tensor(Float32Array.from([0.1, -0.2, 0.3, -0.4]), [2, 2]), s: tensor(Float32Array.from([7]), []) }, 'diff');
    const zero = await svtPrivacy({ fraction: 0 }).apply(m(), ctx);
    expect([...zero.params.get('a')!.data, ...zero.params.get('b')!.data].every((v) => v === 0)).toBe(true);
    expect(zero.params.get('s')!.data[0]).toBe(7);
    const big = { fraction: 0.5, epsilon: 200, noiseVar: 1e9, gamma: 1, tau: -1, replace: false, epsilonThreshold: 100, epsilonQuery: 100 };
    const eight = model({ a: tensor(Float32Array.from([0.2, -0.3, 0.4, -0.5])), b: tensor(Float32Array.from([0.1, -0.2, 0.3, -0.4]), [2, 2]) }, 'diff');
    const out = await svtPrivacy(big).apply(eight, ctx);
    expect([...out.params.get('a')!.data, ...out.params.get('b')!.data].filter((v) => v !== 0)).toHaveLength(Math.ceil(0.5 * 8));
    expect(out.params.get('a')!.dtype).toBe('float32');
  });

  it('derived_percentile_privacy', async () => {
    const c = byId('derived_percentile_privacy');
    const out = await percentilePrivacy({ percentile: 50, gamma: 0.3 }).apply(model({ w: tensor(Float64Array.from(c.inputs!['w'] as number[])) }, 'diff'), { site: 's', job: 'j', round: 0 });
    const want = (c.expected as { w: number[] }).w;
    const got = out.params.get('w')!.data as Float64Array;
    want.forEach((v, i) => expect(Math.abs(got[i]! - v)).toBeLessThan(c.tolerance!));
  });
});
