import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { l2norm, model, tensor, type AuditEventInput, type FilterContext, type FLModel } from '@flare/core';
import { expectFlareCodeAsync } from '@flare/core/testing';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DP_SPENT_META, GAUSSIAN_DP_META, gaussianDp, openPrivacyLedger, rdpEpsilon, BUDGET_ORDERS } from '../src/index.js';
import { memoryPrivacyLedger } from '../src/testing.js';
import { seededRandom } from './helpers/seeded-random.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'flare-dp-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ctxOf = (job = 'job-1', round = 0, events?: AuditEventInput[]): FilterContext => ({
  site: 'site-a',
  job,
  round,
  ...(events === undefined ? {} : { audit: (e: AuditEventInput) => (events.push(e), undefined) }),
});

const update = (scale = 1): FLModel =>
  model(
    {
      'layer1.weight': tensor(Float32Array.from({ length: 600 }, (_, i) => Math.sin(i) * scale), [20, 30]),
      'layer1.bias': tensor(Float64Array.from({ length: 30 }, (_, i) => Math.cos(i) * scale)),
    },
    'diff',
    { NUM_STEPS_CURRENT_ROUND: 10 },
  );

describe('gaussianDp on a result without tensors', () => {
  it('passes it through unchanged (metrics only, e.g. a validation result): no weights are released', async () => {
    const metricsOnly = { ...model(new Map(), 'full'), metrics: { val_accuracy: 0.9 } };
    expect(await gaussianDp({ clipNorm: 2, noiseMultiplier: 1, random: seededRandom('m') }).apply(metricsOnly, ctxOf())).toBe(metricsOnly);
  });
});

describe('gaussianDp clipping', () => {
  // With a negligible noise multiplier the output is the clipped update, so clipping is observable exactly.
  const quiet = (extra: Partial<Parameters<typeof gaussianDp>[0]> = {}) =>
    gaussianDp({ clipNorm: 2, noiseMultiplier: 1e-12, random: seededRandom('clip'), ...extra });

  it('scales an update above C to norm C and keeps its direction (float32 output rounding: 1e-7)', async () => {
    const input = update(1);
    const norm = l2norm(input);
    expect(norm).toBeGreaterThan(2);
    const out = await quiet().apply(input, ctxOf());
    const outNorm = l2norm(out);
    // The centres are clipped in float64 to C/(1 + 1e-9); writing float32 output rounds each value by up to 2^-24.
    expect(Math.abs(outNorm - 2)).toBeLessThan(2e-7);
    const a = input.params.get('layer1.bias')!.data as Float64Array;
    const b = out.params.get('layer1.bias')!.data as Float64Array;
    for (let i = 0; i < a.length; i++) expect(b[i]!).toBeCloseTo((a[i]! * 2) / norm, 8);
  });

  it('leaves an update within C unchanged (up to the noise)', async () => {
    const input = update(0.01);
    const out = await quiet().apply(input, ctxOf());
    expect(Math.abs(l2norm(out) - l2norm(input))).toBeLessThan(1e-9);
  });

  it('never releases a norm above C, for any update (property)', async () => {
    const filter = quiet();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 64 }), async (xs) => {
        const out = await filter.apply(model({ w: tensor(Float64Array.from(xs)) }, 'diff'), ctxOf());
        return l2norm(out) <= 2;
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it('per-tensor clipping bounds each of k tensors by C/sqrt(k), so the whole update stays within C', async () => {
    const out = await quiet({ perTensor: true }).apply(update(1), ctxOf());
    for (const t of out.params.values()) {
      const n = Math.sqrt(Array.from(t.data as Float32Array, (v) => v * v).reduce((s, v) => s + v, 0));
      expect(n).toBeLessThanOrEqual(2 / Math.sqrt(2) + 1e-6);
    }
    expect(l2norm(out)).toBeLessThanOrEqual(2 + 1e-6);
  });
});

describe('gaussianDp noise', () => {
  it('adds noise of mean 0 and standard deviation z·C to every coordinate over 1M coordinates (seed "noise"), keeping dtypes and shapes', async () => {
    const zeros = model({ w: tensor(new Float32Array(1_000_000), [1000, 1000]) }, 'diff');
    const out = await gaussianDp({ clipNorm: 0.5, noiseMultiplier: 2, random: seededRandom('noise') }).apply(zeros, ctxOf());
    const t = out.params.get('w')!;
    expect(t.dtype).toBe('float32');
    expect(t.shape).toEqual([1000, 1000]);
    const d = t.data as Float32Array;
    let m = 0;
    let s = 0;
    for (const v of d) {
      m += v;
      s += v * v;
    }
    // z·C = 1; 5 standard errors: sigma/sqrt(N) for the mean, sigma/sqrt(2N) for the standard deviation.
    expect(Math.abs(m / d.length)).toBeLessThan(5 / Math.sqrt(d.length));
    expect(Math.abs(Math.sqrt(s / d.length) - 1)).toBeLessThan(5 / Math.sqrt(2 * d.length));
  });

  it('does not mutate the input and records what it did in the meta', async () => {
    const input = update(1);
    const before = (input.params.get('layer1.weight')!.data as Float32Array).slice();
    const out = await gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1 }).apply(input, ctxOf());
    expect(input.params.get('layer1.weight')!.data).toEqual(before);
    expect(out).not.toBe(input);
    expect(out.meta['NUM_STEPS_CURRENT_ROUND']).toBe(10);
    expect(out.meta[GAUSSIAN_DP_META]).toMatchObject({ clip_norm: 1, noise_multiplier: 1.1, per_tensor: false, coordinates: 630 });
    expect(input.meta[GAUSSIAN_DP_META]).toBeUndefined();
  });

  it('draws fresh noise from the CSPRNG each time (two releases of the same update differ)', async () => {
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 1 });
    const a = await f.apply(update(1), ctxOf());
    const b = await f.apply(update(1), ctxOf());
    expect(a.params.get('layer1.bias')!.data).not.toEqual(b.params.get('layer1.bias')!.data);
  });
});

describe('gaussianDp refusals', () => {
  const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 1 });

  it('refuses a full model (E_DP_MODEL_KIND)', async () => {
    await expectFlareCodeAsync(async () => f.apply(model({ w: tensor(new Float32Array(3)) }, 'full'), ctxOf()), 'E_DP_MODEL_KIND');
  });

  it('refuses an integer tensor it cannot noise (E_DP_UNSUPPORTED_DTYPE)', async () => {
    const m = model({ w: tensor(new Float32Array(3)), steps: tensor(new Int32Array([5])) }, 'diff');
    await expectFlareCodeAsync(async () => f.apply(m, ctxOf()), 'E_DP_UNSUPPORTED_DTYPE');
  });

  it('refuses NaN or infinite values (E_DP_NON_FINITE)', async () => {
    await expectFlareCodeAsync(async () => f.apply(model({ w: tensor(new Float32Array([1, Number.NaN])) }, 'diff'), ctxOf()), 'E_DP_NON_FINITE');
    await expectFlareCodeAsync(async () => f.apply(model({ w: tensor(new Float64Array([Infinity])) }, 'diff'), ctxOf()), 'E_DP_NON_FINITE');
  });

  it('refuses to run for a cancelled task (E_DP_ABORTED)', async () => {
    const ac = new AbortController();
    ac.abort();
    await expectFlareCodeAsync(async () => f.apply(update(), { ...ctxOf(), signal: ac.signal }), 'E_DP_ABORTED');
  });

  it('rejects bad options with RangeError', () => {
    expect(() => gaussianDp({ clipNorm: 0, noiseMultiplier: 1 })).toThrow(RangeError);
    expect(() => gaussianDp({ clipNorm: 1, noiseMultiplier: -1 })).toThrow(RangeError);
    expect(() => gaussianDp({ clipNorm: 1, noiseMultiplier: 1, budget: { maxEpsilon: 1, delta: 2, ledger: memoryPrivacyLedger({ site: 'site-a' }) } })).toThrow(RangeError);
    expect(() => gaussianDp({ clipNorm: 1, noiseMultiplier: 1, adaptive: { bitNoise: 1, targetQuantile: 1 } })).toThrow(RangeError);
  });
});

describe('gaussianDp budget', () => {
  it('reports the spent (epsilon, delta) in the meta, equal to the RDP accountant over the releases so far', async () => {
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 50, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-a' }) } });
    let out: FLModel | undefined;
    for (let round = 0; round < 3; round++) out = await f.apply(update(), ctxOf('job-1', round));
    const spent = out!.meta[DP_SPENT_META] as Record<string, number>;
    const expected = rdpEpsilon({ noiseMultiplier: 1.1, samplingRate: 1, steps: 3, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    expect(spent['releases']).toBe(3);
    expect(spent['delta']).toBe(1e-5);
    expect(spent['max_epsilon']).toBe(50);
    // The reported epsilon adds the sampler's documented error (2^-47 per coordinate in epsilon; its
    // total-variation part, 2^-180 per coordinate times 1 + e^maxEpsilon, comes out of delta).
    expect(spent['epsilon']! - expected).toBeGreaterThan(0);
    expect(spent['epsilon']! - expected).toBeLessThan(1e-9);
  });

  it('refuses the release that would exceed the budget (E_DP_BUDGET_EXHAUSTED), audits it, and stays refused', async () => {
    const events: AuditEventInput[] = [];
    // One round of z = 1.1 at delta 1e-5 costs about 4.3; two cost about 6.5.
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 5, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-a' }) } });
    await f.apply(update(), ctxOf('job-1', 0, events));
    await expectFlareCodeAsync(() => f.apply(update(), ctxOf('job-1', 1, events)), 'E_DP_BUDGET_EXHAUSTED');
    const refusal = events.find((e) => e.action === 'dp_budget_exhausted');
    expect(refusal?.data?.['max_epsilon']).toBe(5);
    expect(refusal?.data?.['epsilon'] as number).toBeGreaterThan(4);
    expect(refusal?.data?.['would_be_epsilon'] as number).toBeGreaterThan(5);
    // A later round of the same job is refused too, even though nothing more was spent.
    await expectFlareCodeAsync(() => f.apply(update(), ctxOf('job-1', 2, events)), 'E_DP_BUDGET_EXHAUSTED');
    // Another job on the same data shares the budget: refused as well (the data is spent, not the job).
    await expectFlareCodeAsync(() => f.apply(update(), ctxOf('job-2', 0, events)), 'E_DP_BUDGET_EXHAUSTED');
  });

  it('keeps the spending in the ledger on disk (a new filter over the same workspace folder)', async () => {
    const dir = tmp();
    const make = () => gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 5, delta: 1e-5, ledger: openPrivacyLedger(dir, { site: 'site-a' }) } });
    const first = await make().apply(update(), ctxOf());
    const firstSpent = (first.meta[DP_SPENT_META] as Record<string, number>)['epsilon']!;
    expect(readdirSync(dir).filter((f) => f.endsWith('.jsonl'))).toHaveLength(1);
    await expectFlareCodeAsync(() => make().apply(update(), ctxOf()), 'E_DP_BUDGET_EXHAUSTED');
    const lines = readFileSync(join(dir, readdirSync(dir)[0]!), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; totals: { releases: number } });
    expect(lines.map((l) => l.kind)).toEqual(['release', 'exhausted']);
    expect(lines.at(-1)!.totals.releases).toBe(1);
    expect(firstSpent).toBeGreaterThan(4);
  });

  it('refuses to contribute when the ledger was tampered with (E_DP_BUDGET_CORRUPT)', async () => {
    const dir = tmp();
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 50, delta: 1e-5, ledger: openPrivacyLedger(dir, { site: 'site-a' }) } });
    await f.apply(update(), ctxOf());
    const file = join(dir, readdirSync(dir)[0]!);
    const line = JSON.parse(readFileSync(file, 'utf8')) as { totals: { rdp: number[] } };
    writeFileSync(file, `${JSON.stringify({ ...line, totals: { ...line.totals, rdp: line.totals.rdp.map(() => -1) } })}\n`);
    await expectFlareCodeAsync(() => f.apply(update(), ctxOf()), 'E_DP_BUDGET_CORRUPT');
    writeFileSync(file, '{"v": 1,\n');
    await expectFlareCodeAsync(() => f.apply(update(), ctxOf()), 'E_DP_BUDGET_CORRUPT');
  });

  it('accounts sampling rate and adjacency: replace doubles the sensitivity, sampling lowers epsilon', async () => {
    const spentWith = async (budget: Record<string, unknown>) => {
      const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 2, budget: { maxEpsilon: 20, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-a' }), ...budget } });
      const out = await f.apply(update(), ctxOf());
      return (out.meta[DP_SPENT_META] as Record<string, number>)['epsilon']!;
    };
    const base = await spentWith({});
    const replace = await spentWith({ adjacency: 'replace' });
    const sampled = await spentWith({ samplingRate: 0.1 });
    expect(Math.abs(replace - rdpEpsilon({ noiseMultiplier: 1, samplingRate: 1, steps: 1, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon)).toBeLessThan(1e-9);
    expect(Math.abs(sampled - rdpEpsilon({ noiseMultiplier: 2, samplingRate: 0.1, steps: 1, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon)).toBeLessThan(1e-9);
    expect(replace).toBeGreaterThan(base);
    expect(sampled).toBeLessThan(base);
  });
});

describe('gaussianDp adaptive clipping (Andrew et al. 2021)', () => {
  it('grows the clip norm while every update is clipped and shrinks it while none is', async () => {
    const f = gaussianDp({ clipNorm: 0.01, noiseMultiplier: 1, adaptive: { bitNoise: 1e-6, learningRate: 0.2, targetQuantile: 0.5 }, random: seededRandom('adaptive') });
    const clipOf = (m: FLModel) => (m.meta[GAUSSIAN_DP_META] as { clip_norm: number }).clip_norm;
    const norms: number[] = [];
    for (let round = 0; round < 5; round++) norms.push(clipOf(await f.apply(update(1), ctxOf('grow', round))));
    // Every update (norm ~ 17) is clipped: C grows by e^(0.2·0.5) each round.
    for (let i = 1; i < norms.length; i++) expect(norms[i]! / norms[i - 1]!).toBeCloseTo(Math.exp(0.1), 5);
    const g = gaussianDp({ clipNorm: 100, noiseMultiplier: 1, adaptive: { bitNoise: 1e-6 }, random: seededRandom('adaptive2') });
    const a = clipOf(await g.apply(update(1), ctxOf('shrink', 0)));
    const b = clipOf(await g.apply(update(1), ctxOf('shrink', 1)));
    expect(b / a).toBeCloseTo(Math.exp(-0.1), 5);
  });

  it('keeps the clip norm in the ledger (survives restarts) and accounts the noisy bit', async () => {
    const dir = tmp();
    const make = () =>
      gaussianDp({ clipNorm: 0.01, noiseMultiplier: 1, adaptive: { bitNoise: 2 }, budget: { maxEpsilon: 30, delta: 1e-5, ledger: openPrivacyLedger(dir, { site: 'site-a' }) } });
    const first = await make().apply(update(1), ctxOf());
    const info = first.meta[GAUSSIAN_DP_META] as { adaptive: { next_clip_norm: number } };
    const second = await make().apply(update(1), ctxOf('job-1', 1));
    expect((second.meta[GAUSSIAN_DP_META] as { clip_norm: number }).clip_norm).toBe(info.adaptive.next_clip_norm);
    // z_eff = (1 + 1/4)^(-1/2): the bit's noise costs privacy too.
    const spent = (second.meta[DP_SPENT_META] as Record<string, number>)['epsilon']!;
    const expected = rdpEpsilon({ noiseMultiplier: 1 / Math.sqrt(1.25), samplingRate: 1, steps: 2, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    expect(Math.abs(spent - expected)).toBeLessThan(1e-9);
  });
});
