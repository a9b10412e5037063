import { describe, expect, it } from 'vitest';
import { checkRoundConfig } from '../src/config.js';
import { PROTOCOL } from '../src/crypto.js';
import { decodeSum, encodeUpdate } from '../src/encode.js';
import { planSecAggGraph } from '../src/plan-graph.js';
import { checkEncoding, encodingBounds, planEncoding } from '../src/plan-encoding.js';
import { planSecAggRound } from '../src/plan-round.js';
import { siteNames } from './helpers/harness.js';

const code = (c: string) => expect.objectContaining({ code: c });

// An independent, exact check of the graph planner's bounds: hypergeometric tails in BigInt.
function choose(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n;
  let r = 1n;
  for (let i = 0; i < k; i++) r = (r * BigInt(n - i)) / BigInt(i + 1);
  return r;
}
/** P(X >= x) for X ~ Hypergeometric(population, marked, draws), as a float from exact integers. */
function tail(population: number, marked: number, draws: number, x: number): number {
  let num = 0n;
  for (let i = Math.max(x, 0); i <= Math.min(marked, draws); i++) num += choose(marked, i) * choose(population - marked, draws - i);
  return Number((num * 10n ** 30n) / choose(population, draws)) / 1e30;
}

describe('planning a round', () => {
  it('the graph plan for 100 sites (5% corrupt, 5% dropouts) meets its bounds exactly and no smaller degree would', () => {
    const n = 100;
    const plan = planSecAggGraph({ sites: n, corruptFraction: 0.05, dropoutFraction: 0.05, securityBits: 40, correctnessBits: 20 });
    const { degree: k, threshold: t, maxCorruptNeighbours: c } = plan;
    expect(plan.corruptSites).toBe(5);
    expect(plan.dropoutSites).toBe(5);
    expect(k).toBeLessThan(n - 1);
    expect(2 * t).toBeGreaterThan(k + 1 + c);
    // Correctness: n·P(more than k + 1 - t of the k + 1 holders drop) <= 2^-20.
    expect(n * tail(n, 5, k + 1, k + 2 - t)).toBeLessThanOrEqual(2 ** -20);
    // Security: n·P(more than c corrupt neighbours) and the ring's connectivity, within 2^-40 together.
    const ring = n * [...Array(k / 2).keys()].reduce((p, i) => (p * (10 - i)) / (n - i), 1);
    expect(n * tail(n - 1, 5, k, c + 1) + ring).toBeLessThanOrEqual(2 ** -40);
    expect(plan.minHonestInSum).toBe(90);
    expect(plan.activeMinHonestInSum).toBe(t - c);
    // Degree k - 2 fails one of the bounds.
    const smaller = k - 2;
    const ringSmaller = n * [...Array(smaller / 2).keys()].reduce((p, i) => (p * (10 - i)) / (n - i), 1);
    expect(ringSmaller).toBeGreaterThan(2 ** -41);
  });

  it('grows the degree slowly with the number of sites for a semi-honest server, and to a majority for an active one', () => {
    const degrees = [100, 1000, 10_000].map((sites) => planSecAggGraph({ sites, corruptFraction: 0.05, dropoutFraction: 0.05 }).degree);
    expect(degrees[2]!).toBeLessThan(100);
    expect(degrees[2]! / degrees[0]!).toBeLessThan(4);
    const active = planSecAggGraph({ sites: 100, corruptFraction: 0.05, dropoutFraction: 0.05, server: 'active' });
    expect(active.minHonestInSum).toBeGreaterThanOrEqual(45);
    expect(active.activeMinHonestInSum).toBe(active.minHonestInSum);
  });

  it('uses the complete graph for a handful of sites and refuses impossible requests (E_SECAGG_PARAMS)', () => {
    expect(planSecAggGraph({ sites: 5, corruptFraction: 0, dropoutFraction: 0.2 })).toMatchObject({ degree: 4, threshold: 4 });
    expect(() => planSecAggGraph({ sites: 20, corruptFraction: 0.4, dropoutFraction: 0.4, server: 'active' })).toThrow(code('E_SECAGG_PARAMS'));
    expect(() => planSecAggGraph({ sites: 1 })).toThrow(RangeError);
    expect(() => planSecAggGraph({ sites: 10, corruptFraction: 1 })).toThrow(RangeError);
  });

  it('chooses the finest granularity that keeps the sum in the ring: the wrap bound meets the target, and a worst-case sum decodes', () => {
    const n = 20;
    const plan = planEncoding({ dimension: 1000, clip: 1, bits: 16, sites: n, wrapProbability: 1e-9 });
    expect(plan.wrapProbability).toBeLessThanOrEqual(1.000001e-9);
    expect(plan.wrapProbability).toBeGreaterThan(1e-10);
    const config = checkRoundConfig({
      protocol: PROTOCOL, job: 'j', round: 0, sites: siteNames(n), degree: n - 1, threshold: 11, minSurvivors: 11,
      bits: 16, length: plan.length, encoding: plan.encoding,
    });
    // All sites send the same update of norm 1, concentrated on one coordinate: the rotation spreads it.
    const x = new Float32Array(1000);
    x[17] = 1;
    const sum = new Uint32Array(plan.length);
    for (let s = 0; s < n; s++) {
      const e = encodeUpdate(x, config);
      for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! + e[i]!;
    }
    const decoded = decodeSum(sum.map((v) => v & 0xffff), config);
    expect(decoded[17]).toBeCloseTo(n, 0);
  });

  it('refuses a ring too small for the sites, or noise below half a ring unit (E_SECAGG_PARAMS)', () => {
    expect(() => planEncoding({ dimension: 1000, clip: 1, bits: 4, sites: 100 })).toThrow(code('E_SECAGG_PARAMS'));
    expect(() => planEncoding({ dimension: 10, clip: 1, bits: 6, sites: 40, rotation: 'none' })).toThrow(code('E_SECAGG_PARAMS'));
    expect(() => planEncoding({ dimension: 10, clip: 1, bits: 6, sites: 2, rotation: 'none', noise: { multiplier: 0.001, honestSites: 2 } })).toThrow(code('E_SECAGG_PARAMS'));
  });

  it('a site refuses a configuration whose sum would likely wrap (E_SECAGG_PARAMS)', () => {
    const plan = planEncoding({ dimension: 100, clip: 1, bits: 16, sites: 10 });
    const base = { protocol: PROTOCOL, job: 'j', round: 0, sites: siteNames(10), degree: 9, threshold: 6, minSurvivors: 6, bits: 16, length: plan.length };
    checkEncoding(checkRoundConfig({ ...base, encoding: plan.encoding }));
    const fine = checkRoundConfig({ ...base, encoding: { ...plan.encoding, granularity: plan.encoding.granularity / 20 } });
    expect(encodingBounds(fine.encoding!, 16, 10).wrapProbability).toBeGreaterThan(1e-3);
    expect(() => checkEncoding(fine)).toThrow(code('E_SECAGG_PARAMS'));
  });

  it('plans a whole round: sorted sites, graph, encoding, DP noise counted on the honest sites the plan guarantees', () => {
    const sites = siteNames(30).reverse();
    const plan = planSecAggRound({
      job: 'job-9', round: 4, sites, corruptFraction: 0.1, dropoutFraction: 0.1, bits: 20,
      encoding: { dimension: 5000, clip: 0.5, noise: { multiplier: 1.1 } },
    });
    expect(plan.config.sites).toEqual(siteNames(30));
    expect(plan.config.encoding!.noise!.honestSites).toBe(plan.graph.minHonestInSum);
    expect(plan.config.minSurvivors).toBe(30 - plan.graph.dropoutSites);
    expect(plan.encoding!.noiseStddevOnSum).toBeCloseTo(0.55, 10);
    expect(() => planSecAggRound({ job: 'j', round: 0, sites, encoding: null })).toThrow(RangeError);
  });
});
