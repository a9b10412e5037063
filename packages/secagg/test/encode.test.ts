import { describe, expect, it } from 'vitest';
import { checkRoundConfig, type RoundConfig } from '../src/config.js';
import { PROTOCOL } from '../src/crypto.js';
import { decodeSum, encodeUpdate } from '../src/encode.js';
import { applySigns, hadamard } from '../src/hadamard.js';
import { planEncoding, roundedL2Bound } from '../src/plan-encoding.js';
import { SeededWords } from './helpers/reference-sampler.js';
import { siteNames } from './helpers/harness.js';

const code = (c: string) => expect.objectContaining({ code: c });

function configFor(plan: ReturnType<typeof planEncoding>, sites = 4): RoundConfig {
  return checkRoundConfig({
    protocol: PROTOCOL, job: 'job-e', round: 1, sites: siteNames(sites), degree: sites - 1, threshold: sites, minSurvivors: sites,
    bits: plan.bits, length: plan.length, encoding: plan.encoding,
  });
}

function ringSum(config: RoundConfig, encoded: readonly Uint32Array[]): Uint32Array {
  const sum = new Uint32Array(config.length);
  for (const e of encoded) for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + e[i]!;
  return sum;
}

const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

describe('encoding updates into the ring and back', () => {
  it('the random rotation is orthonormal and undone exactly (H and D are involutions)', () => {
    const v = Float64Array.from({ length: 64 }, (_, i) => Math.sin(i) * 3);
    const w = v.slice();
    applySigns(w, 'job', 2);
    hadamard(w);
    expect(norm(w)).toBeCloseTo(norm(v), 10);
    hadamard(w);
    applySigns(w, 'job', 2);
    for (let i = 0; i < v.length; i++) expect(w[i]).toBeCloseTo(v[i]!, 12);
    expect(() => hadamard(new Float64Array(6))).toThrow(RangeError);
  });

  for (const rotation of ['none', 'hadamard'] as const) {
    it(`decodes the sum of encoded updates within the rounding error n·γ·√d (${rotation})`, () => {
      const n = 4;
      const dimension = 300;
      const plan = planEncoding({ dimension, clip: 2, bits: 20, sites: n, rotation });
      const config = configFor(plan, n);
      const updates = Array.from({ length: n }, (_, s) => Float32Array.from({ length: dimension }, (_, i) => Math.cos(i * (s + 1)) * 0.05));
      const decoded = decodeSum(ringSum(config, updates.map((u) => encodeUpdate(u, config))), config);
      expect(decoded).toHaveLength(dimension);
      const err = decoded.map((v, i) => v - updates.reduce((s, u) => s + u[i]!, 0));
      expect(norm(err)).toBeLessThanOrEqual(n * plan.encoding.granularity * Math.sqrt(plan.length));
      expect(norm(err)).toBeGreaterThan(0); // rounding happened: the test is not vacuous
    });
  }

  it('clips each update to its L2 bound before encoding', () => {
    const plan = planEncoding({ dimension: 100, clip: 1, bits: 24, sites: 1, rotation: 'hadamard' });
    const config = configFor(plan, 2);
    const big = Float64Array.from({ length: 100 }, (_, i) => (i % 7) - 3);
    const decoded = decodeSum(encodeUpdate(big, config), config);
    const expected = big.map((x) => x / norm(big));
    expect(norm(decoded.map((v, i) => v - expected[i]!))).toBeLessThan(0.01);
  });

  it('keeps every rounded vector within the conditional-rounding bound (Kairouz et al., Theorem 2), the sensitivity privacy rests on', () => {
    const plan = planEncoding({ dimension: 500, clip: 1, bits: 16, sites: 3, rotation: 'hadamard' });
    const config = configFor(plan, 3);
    const bound = roundedL2Bound(1 / plan.encoding.granularity, plan.encoding.beta, plan.length);
    const random = new SeededWords('rounding');
    for (let trial = 0; trial < 20; trial++) {
      const x = Float64Array.from({ length: 500 }, (_, i) => Math.sin(i + trial));
      const ring = encodeUpdate(x, config, { random });
      const signed = Array.from(ring, (v) => (v >= 2 ** 15 ? v - 2 ** 16 : v));
      expect(norm(signed)).toBeLessThanOrEqual(bound);
    }
  });

  it('rounds stochastically without bias: the mean of many roundings of 0.3 units is 0.3', () => {
    const plan = planEncoding({ dimension: 1000, clip: 1e6, bits: 24, sites: 1, rotation: 'none', beta: 0 });
    const config = configFor(plan, 2);
    const x = new Float64Array(1000).fill(0.3 * plan.encoding.granularity);
    const random = new SeededWords('unbiased');
    let total = 0;
    for (let r = 0; r < 20; r++) for (const v of encodeUpdate(x, config, { random })) total += v;
    // 20,000 Bernoulli(0.3) draws: standard deviation of the mean 0.0032; 0.02 is over 6 of them.
    expect(Math.abs(total / 20_000 - 0.3)).toBeLessThan(0.02);
  });

  it('refuses an update of the wrong length (E_SECAGG_DIMENSION) or with NaN (E_SECAGG_NON_FINITE)', () => {
    const config = configFor(planEncoding({ dimension: 10, clip: 1, bits: 16, sites: 2 }), 2);
    expect(() => encodeUpdate(new Float32Array(9), config)).toThrow(code('E_SECAGG_DIMENSION'));
    const nan = new Float32Array(10);
    nan[4] = Number.NaN;
    expect(() => encodeUpdate(nan, config)).toThrow(code('E_SECAGG_NON_FINITE'));
    expect(() => decodeSum(new Uint32Array(3), config)).toThrow(code('E_SECAGG_DIMENSION'));
  });

  it('refuses a sampler that returns non-integers (E_SECAGG_SAMPLER) and requires one when the round adds noise', () => {
    const plan = planEncoding({ dimension: 10, clip: 1, bits: 24, sites: 2, noise: { multiplier: 1, honestSites: 2 } });
    const config = configFor(plan, 2);
    const x = new Float32Array(10);
    expect(() => encodeUpdate(x, config)).toThrow(TypeError);
    expect(() => encodeUpdate(x, config, { sampler: { sample: (out) => out.fill(0.5) } })).toThrow(code('E_SECAGG_SAMPLER'));
    expect(() => encodeUpdate(x, config, { sampler: { sample: (out) => out.fill(Number.POSITIVE_INFINITY) } })).toThrow(code('E_SECAGG_SAMPLER'));
  });
});
