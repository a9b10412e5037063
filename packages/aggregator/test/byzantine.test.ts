// A Byzantine simulation: 20 sites, 4 of them faulty. Each aggregator's distance from the mean of the 16
// honest updates is compared with the honest radius D = max_i ||h_i - honest mean|| (the distance of the
// worst honest site): the robust aggregators must stay within D under every attack, plain FedAvg is pulled
// beyond it by the blatant ones. "A little is enough" (ALIE) hides inside the honest spread on purpose, so
// FedAvg is barely moved by it; robust aggregators must still stay within D.
import type { FLModel } from '@flare/core';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_AGGREGATOR_SPEC,
  bulyan,
  coordinateMedian,
  createAggregator,
  fedAvg,
  geometricMedian,
  krum,
  multiKrum,
  normBound,
  trimmedMean,
  type WeightedUpdate,
} from '../src/index.js';
import { f32, gaussian, rng } from './fixtures.js';

const N = 20;
const F = 4;
const DIM_A = 150;
const DIM_B = 50;

function flat(m: FLModel): Float64Array {
  return Float64Array.from([...(m.params.get('a')!.data as Float32Array), ...(m.params.get('b')!.data as Float32Array)]);
}
function toModel(v: ArrayLike<number>): FLModel {
  const all = Array.from(v);
  return f32({ a: all.slice(0, DIM_A), b: all.slice(DIM_A) });
}
function dist(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

// Baruch, Baruch & Goldberg, "A little is enough: circumventing defenses for distributed learning",
// NeurIPS 2019, Algorithm 3: s = floor(n/2 + 1) - f supporters needed; z = Phi^-1((n - s) / n).
// n = 20, f = 4: s = 7, z = Phi^-1(0.65) = 0.385320466 (the standard normal quantile).
const Z_ALIE = 0.385320466;

type Attack = 'sign-flip' | 'large-gaussian' | 'scaled' | 'alie';

function scenario(attack: Attack, seed: number) {
  const g = gaussian(rng(seed));
  const d = DIM_A + DIM_B;
  const mu = Array.from({ length: d }, () => 3 + g());
  const honest = Array.from({ length: N }, () => mu.map((m) => m + 0.5 * g()));
  const honestIdx = Array.from({ length: N - F }, (_, i) => i + F); // sites 0..3 are faulty
  const mean = new Float64Array(d);
  const std = new Float64Array(d);
  for (const i of honestIdx) honest[i]!.forEach((v, j) => (mean[j] = mean[j]! + v / (N - F)));
  for (const i of honestIdx) honest[i]!.forEach((v, j) => (std[j] = std[j]! + (v - mean[j]!) ** 2 / (N - F - 1)));
  const updates: number[][] = honest.map((h, i) => {
    if (i >= F) return h;
    switch (attack) {
      case 'sign-flip':
        return h.map((v) => -v);
      case 'large-gaussian':
        return h.map(() => 100 * g());
      case 'scaled':
        return h.map((v) => 10 * v);
      case 'alie':
        return Array.from(mean, (m, j) => m - Z_ALIE * Math.sqrt(std[j]!));
    }
  });
  // Site names interleave faulty and honest sites, so no method can lean on list order.
  const list: WeightedUpdate[] = updates.map((u, i) => ({ model: toModel(u), from: `site-${String((i * 7) % N).padStart(2, '0')}` }));
  const radius = Math.max(...honestIdx.map((i) => dist(flat(list[i]!.model), mean)));
  const honestNorms = honestIdx.map((i) => Math.hypot(...honest[i]!)).sort((a, b) => a - b);
  return { list, mean, radius, clip: honestNorms[honestNorms.length >> 1]! };
}

const robust: Record<string, (l: WeightedUpdate[]) => FLModel> = {
  median: (l) => coordinateMedian(l, { f: F }),
  'trimmed-mean (beta 0.2)': (l) => trimmedMean(l, { beta: 0.2, f: F }),
  krum: (l) => krum(l, { f: F }),
  'multi-krum (m = n - f)': (l) => multiKrum(l, { f: F, m: N - F }),
  bulyan: (l) => bulyan(l, { f: F }),
  'geometric median': (l) => geometricMedian(l, { f: F }),
};

describe(`Byzantine simulation: n = ${N}, f = ${F}, ${DIM_A + DIM_B} parameters`, () => {
  const attacks: Attack[] = ['sign-flip', 'large-gaussian', 'scaled', 'alie'];
  const table: string[] = [];

  for (const attack of attacks) {
    it(`${attack}: every robust aggregator stays within the honest radius`, () => {
      const { list, mean, radius, clip } = scenario(attack, 2019);
      const row: string[] = [`${attack.padEnd(15)} D = ${radius.toFixed(2).padStart(6)}`];
      for (const [name, fn] of Object.entries(robust)) {
        const d = dist(flat(fn(list)), mean);
        row.push(`${name}: ${d.toFixed(2)}`);
        expect(d, `${name} under ${attack}`).toBeLessThanOrEqual(radius);
      }
      const avg = dist(flat(fedAvg(list)), mean);
      const bounded = dist(flat(fedAvg(list.map((u) => ({ ...u, model: normBound(u.model, { maxNorm: clip }) })))), mean);
      // The secure default: FedAvg with each update clipped to 3x the round's median update norm.
      const secure = createAggregator(DEFAULT_AGGREGATOR_SPEC);
      for (const u of list) secure.accept(u.model, { from: u.from! });
      const adaptive = dist(flat(secure.result()), mean);
      row.push(`fedavg: ${avg.toFixed(2)}`, `fedavg + norm bound: ${bounded.toFixed(2)}`, `fedavg + adaptive bound (default): ${adaptive.toFixed(2)}`);
      table.push(row.join(' | '));
      if (attack === 'alie') {
        // ALIE is built to look honest: it moves FedAvg little, and that is the point of the attack.
        expect(avg).toBeLessThan(radius);
      } else {
        expect(avg, 'fedavg is pulled away').toBeGreaterThan(2 * radius);
      }
      // Norm bounding caps the magnitude of each update, not its direction: a faulty site can then move the
      // average by at most C/n and withhold its share of the honest mean, so the error is about 2 (f/n) C.
      // That tames scaling and noise; a sign flip of an honest-sized update is already within the bound.
      if (attack === 'scaled' || attack === 'large-gaussian') {
        expect(bounded).toBeLessThanOrEqual((2 * F * clip) / N);
        expect(bounded).toBeLessThan(avg / 10);
        // The adaptive bound (3x the median norm, no norm given by hand) has at most 3x that error.
        expect(adaptive).toBeLessThanOrEqual((2 * F * 3 * clip) / N);
        expect(adaptive).toBeLessThan(avg / 3);
      }
    });
  }

  it('prints the distances (the figures of the report)', () => {
    expect(table).toHaveLength(attacks.length);
    console.info(`distance from the honest mean (n = ${N}, f = ${F}):\n${table.join('\n')}`);
  });
});
