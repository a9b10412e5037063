import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openRound } from '../src/config.js';
import { neighboursOf } from '../src/graph.js';
import { planSecAggRound } from '../src/plan-round.js';
import { simulateRound, testIdentities, type DropPhase } from '../src/testing.js';
import { Harness, plainSum, randomInputs, ringConfig, siteNames } from './helpers/harness.js';

const PHASES: readonly DropPhase[] = ['keys', 'shares', 'maskedInput', 'consistency', 'unmask'];

/**
 * Whether a round with these dropouts can be unmasked, from the protocol's rules alone: every site that shared
 * must keep `threshold` revealing holders (itself and its neighbours that shared with it), and every phase must
 * keep enough sites.
 */
function expectedToSucceed(config: ReturnType<typeof ringConfig>, drop: Partial<Record<DropPhase, string[]>>): boolean {
  const { graph } = openRound(config);
  const n = config.sites.length;
  const stage = (site: string): number => {
    for (const [k, p] of PHASES.entries()) if (drop[p]?.includes(site)) return k;
    return PHASES.length;
  };
  const at = config.sites.map(stage); // the first phase the site does not complete
  const advertised = (i: number) => at[i]! > 0;
  // Each site that advertised needs threshold - 1 neighbours that advertised, else it refuses to share.
  const shares = (i: number) => at[i]! > 1 && neighboursOf(graph, i).filter(advertised).length + 1 >= config.threshold;
  const sharedTo = (i: number) => neighboursOf(graph, i).filter(shares);
  const masked = (i: number) => at[i]! > 2 && shares(i) && sharedTo(i).length + 1 >= config.threshold;
  if (config.sites.filter((_, i) => advertised(i)).length < config.minSurvivors) return false;
  if (config.sites.filter((_, i) => shares(i)).length < config.minSurvivors) return false;
  if (config.sites.filter((_, i) => masked(i)).length < config.minSurvivors) return false;
  const signs = (i: number) => masked(i) && at[i]! > 3;
  if (config.sites.filter((_, i) => signs(i)).length < config.threshold) return false;
  // A site unmasks when threshold - 1 of its neighbours signed.
  const reveals = (i: number) => signs(i) && at[i]! > 4 && neighboursOf(graph, i).filter(signs).length + 1 >= config.threshold;
  for (let u = 0; u < n; u++) {
    if (!shares(u)) continue;
    const holders = [u, ...sharedTo(u).filter((w) => neighboursOf(graph, w).includes(u))];
    if (holders.filter(reveals).length < config.threshold) return false;
  }
  return true;
}

describe('SecAgg+ rounds', () => {
  it('the unmasked sum equals the plaintext sum of the summed sites exactly, for random dropouts, or the round fails with a code exactly when the rules say (property)', () => {
    const identities = testIdentities(siteNames(12));
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 12 }),
        fc.integer({ min: 1, max: 32 }),
        fc.boolean(),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 11 }), fc.constantFrom(...PHASES)), { maxLength: 4 }),
        fc.integer({ min: 0, max: 1000 }),
        (n, bits, sparse, drops, seed) => {
          const degree = sparse && n >= 6 ? 4 : n - 1;
          const threshold = Math.floor((degree + 1) / 2) + 1;
          const config = ringConfig(n, { degree, threshold, minSurvivors: threshold, bits, length: 33 });
          const drop: Partial<Record<DropPhase, string[]>> = {};
          for (const [i, phase] of drops) if (i < n && !Object.values(drop).some((l) => l.includes(config.sites[i]!))) (drop[phase] ??= []).push(config.sites[i]!);
          const inputs = randomInputs(config, seed);
          const ok = expectedToSucceed(config, drop);
          let result;
          try {
            result = simulateRound({ config, inputs, drop, identities, onRefusal: 'drop' });
          } catch (e) {
            expect(ok).toBe(false);
            expect((e as { code?: string }).code).toMatch(/^E_SECAGG_(TOO_FEW|BELOW_THRESHOLD)$/);
            return;
          }
          expect(ok).toBe(true);
          expect(result.sum).toEqual(plainSum(config, inputs, result.summed));
          const lost = [...(drop.keys ?? []), ...(drop.shares ?? []), ...(drop.maskedInput ?? [])];
          expect(result.summed).toEqual(config.sites.filter((s) => !lost.includes(s) && result.summed.includes(s)));
          for (const s of drop.consistency ?? []) expect(result.summed).toContain(s);
          for (const s of drop.unmask ?? []) expect(result.summed).toContain(s);
        },
      ),
      { numRuns: 60, seed: 2026120524 },
    );
  }, 300_000);

  it('survives a dropout in every phase at once, and reports who dropped where', () => {
    const config = ringConfig(11, { threshold: 6, minSurvivors: 6, bits: 32, length: 100 });
    const inputs = randomInputs(config, 7);
    const [a, b, c, d, e] = config.sites;
    const result = simulateRound({ config, inputs, drop: { keys: [a!], shares: [b!], maskedInput: [c!], consistency: [d!], unmask: [e!] } });
    expect(result.dropped).toEqual({ keys: [a], shares: [b], maskedInput: [c], consistency: [d], unmask: [e] });
    expect(result.summed).toEqual(config.sites.filter((s) => ![a, b, c].includes(s)));
    expect(result.sum).toEqual(plainSum(config, inputs, result.summed));
  });

  it('removes the pairwise masks of a site that dropped after sharing, with a sparse graph (k = 4 of 20)', () => {
    const config = ringConfig(20, { degree: 4, threshold: 3, minSurvivors: 3, bits: 24, length: 50 });
    const inputs = randomInputs(config, 3);
    const result = simulateRound({ config, inputs, drop: { maskedInput: [config.sites[4]!, config.sites[11]!] } });
    expect(result.summed).toHaveLength(18);
    expect(result.sum).toEqual(plainSum(config, inputs, result.summed));
  });

  it('fails with E_SECAGG_BELOW_THRESHOLD when too few holders of a secret reveal their shares', () => {
    const config = ringConfig(5, { threshold: 4, minSurvivors: 4, bits: 16, length: 8 });
    const h = new Harness(config);
    const inputs = randomInputs(config);
    const requests = h.consistency(h.masked(h.shares(h.keys()), inputs));
    // Two of five reveal nothing: each secret has 3 of the 4 shares it needs.
    h.unmask(requests, [config.sites[0]!, config.sites[1]!]);
    expect(() => h.server.finish()).toThrow(expect.objectContaining({ code: 'E_SECAGG_BELOW_THRESHOLD' }));
  });

  it('fails with E_SECAGG_TOO_FEW when fewer sites than the threshold send masked inputs', () => {
    const config = ringConfig(5, { threshold: 4, minSurvivors: 4, bits: 16, length: 8 });
    const h = new Harness(config);
    expect(() => h.masked(h.shares(h.keys()), randomInputs(config), [config.sites[0]!, config.sites[1]!])).toThrow(
      expect.objectContaining({ code: 'E_SECAGG_TOO_FEW' }),
    );
  });

  it('runs a planned round (semi-honest plan for 40 sites, 10% dropouts) with the planned degree', () => {
    const sites = siteNames(40);
    const { config, graph } = planSecAggRound({ job: 'job-p', round: 0, sites, corruptFraction: 0.05, dropoutFraction: 0.1, encoding: null, length: 16, bits: 20 });
    expect(config.degree).toBe(graph.degree);
    expect(config.degree).toBeLessThan(39);
    const inputs = randomInputs(config, 11);
    const result = simulateRound({ config, inputs, drop: { maskedInput: sites.slice(0, 2), unmask: sites.slice(2, 4) } });
    expect(result.sum).toEqual(plainSum(config, inputs, result.summed));
  }, 120_000);
});
