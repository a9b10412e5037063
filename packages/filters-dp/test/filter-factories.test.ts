import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { model, tensor, type FilterEnv } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BUDGET_FOLDER,
  createDpFilterFactories,
  dpFilterFactories,
  DP_SPENT_META,
  excludeVarsFactory,
  FLARE_FILTER_ALIASES,
  gaussianDpFactory,
  percentilePrivacyFactory,
  svtPrivacyFactory,
} from '../src/index.js';
import { memoryPrivacyLedger } from '../src/testing.js';

const dirs: string[] = [];
const envOf = (): FilterEnv => {
  const workspace = mkdtempSync(join(tmpdir(), 'flare-ws-'));
  dirs.push(workspace);
  return { site: 'site-a', workspace };
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('dpFilterFactories', () => {
  it('registers gaussian-dp, percentile-privacy, svt-privacy, exclude-vars, dp-sgd and metrics-privacy', () => {
    expect(dpFilterFactories.map((f) => f.name)).toEqual(['gaussian-dp', 'percentile-privacy', 'svt-privacy', 'exclude-vars', 'dp-sgd', 'metrics-privacy']);
  });

  it('createDpFilterFactories({ ledger }) charges the given ledger (one per site, opened with the audit log\'s heads) and refuses another site', async () => {
    const ledger = memoryPrivacyLedger({ site: 'site-a' });
    const factories = new Map(createDpFilterFactories({ ledger }).map((f) => [f.name, f]));
    const g = factories.get('gaussian-dp')!;
    const env = envOf();
    await g.create(g.args.parse({ clipNorm: 1, noiseMultiplier: 2, budget: { maxEpsilon: 20, delta: 1e-5, dataset: 'spam' } }), env).apply(model({ w: tensor(new Float32Array([1])) }, 'diff'), { site: 'site-a', job: 'j', round: 0 });
    expect((await ledger.read('spam', 'j')).totals?.releases).toBe(1);
    expect(readdirSync(env.workspace)).toEqual([]); // nothing under the workspace: the given ledger was used
    expect(() => g.create(g.args.parse({ clipNorm: 1, noiseMultiplier: 2, budget: { maxEpsilon: 20, delta: 1e-5 } }), { ...env, site: 'site-b' })).toThrow(TypeError);
    expect(g.args.safeParse({ clipNorm: 1, noiseMultiplier: 2, budget: { maxEpsilon: 20, delta: 1e-5, dataset: '../x' } }).success).toBe(false);
  });

  it("maps FLARE's class names and paths to the registered names", () => {
    expect(FLARE_FILTER_ALIASES.get('PercentilePrivacy')).toBe('percentile-privacy');
    expect(FLARE_FILTER_ALIASES.get('nvflare.app_common.filters.svt_privacy.SVTPrivacy')).toBe('svt-privacy');
    expect(FLARE_FILTER_ALIASES.get('ExcludeVars')).toBe('exclude-vars');
    for (const name of FLARE_FILTER_ALIASES.values()) expect(dpFilterFactories.some((f) => f.name === name)).toBe(true);
  });
});

describe('gaussianDpFactory', () => {
  it('validates args (unknown keys and bad values fail at load time) and applies defaults', () => {
    expect(gaussianDpFactory.args.safeParse({ clipNorm: 1 }).success).toBe(false);
    expect(gaussianDpFactory.args.safeParse({ clipNorm: 1, noiseMultiplier: 1, clip_norm: 2 }).success).toBe(false);
    expect(gaussianDpFactory.args.safeParse({ clipNorm: -1, noiseMultiplier: 1 }).success).toBe(false);
    expect(gaussianDpFactory.args.safeParse({ clipNorm: 1, noiseMultiplier: 1, budget: { maxEpsilon: 1, delta: 1 } }).success).toBe(false);
    expect(gaussianDpFactory.args.safeParse({ clipNorm: 1, noiseMultiplier: 1, adaptive: {} }).success).toBe(false);
    const parsed = gaussianDpFactory.args.parse({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 8, delta: 1e-5 } });
    expect(parsed).toEqual({ clipNorm: 1, noiseMultiplier: 1.1, perTensor: false, budget: { maxEpsilon: 8, delta: 1e-5, samplingRate: 1, adjacency: 'add-remove' } });
  });

  it('keeps the budget under <workspace>/dp-budget/ and reports the spent epsilon in the meta', async () => {
    const env = envOf();
    const filter = gaussianDpFactory.create(gaussianDpFactory.args.parse({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 8, delta: 1e-5 } }), env);
    const out = await filter.apply(model({ w: tensor(new Float32Array(10)) }, 'diff'), { site: 'site-a', job: 'job-9', round: 0 });
    expect(readdirSync(join(env.workspace, BUDGET_FOLDER))).toHaveLength(1);
    expect((out.meta[DP_SPENT_META] as Record<string, number>)['epsilon']).toBeGreaterThan(0);
  });
});

describe('percentilePrivacyFactory', () => {
  it("takes FLARE's arguments and defaults (percentile 10, gamma 0.01) and FLARE's data_kinds", async () => {
    expect(percentilePrivacyFactory.args.parse({})).toEqual({ percentile: 10, gamma: 0.01 });
    expect(percentilePrivacyFactory.args.safeParse({ percentile: 200 }).success).toBe(false);
    const args = percentilePrivacyFactory.args.parse({ data_kinds: ['WEIGHT_DIFF'] });
    const f = percentilePrivacyFactory.create(args, envOf());
    const full = model({ w: tensor(Float32Array.from([1, 2])) }, 'full');
    expect(await f.apply(full, { site: 's', job: 'j', round: 0 })).toBe(full);
  });
});

describe('svtPrivacyFactory', () => {
  it("takes FLARE's argument names and defaults", () => {
    expect(svtPrivacyFactory.args.parse({})).toEqual({ fraction: 0.1, epsilon: 0.1, noise_var: 0.1, gamma: 1e-5, tau: 1e-6, replace: true });
    expect(svtPrivacyFactory.args.safeParse({ noiseVar: 1 }).success).toBe(false);
    const f = svtPrivacyFactory.create(svtPrivacyFactory.args.parse({ fraction: 0.5, epsilon: 1, noise_var: 0.5 }), envOf());
    expect(f.name).toBe('svt-privacy');
  });
});

describe('excludeVarsFactory', () => {
  it("takes FLARE's exclude_vars (a list or a regular expression), or names, or pattern: exactly one", async () => {
    const env = envOf();
    const m = model({ a: tensor(new Float32Array(1)), b: tensor(new Float32Array(1)) }, 'diff');
    const ctx = { site: 's', job: 'j', round: 0 };
    for (const args of [{ exclude_vars: ['a'] }, { exclude_vars: '^a$' }, { names: ['a'] }, { pattern: 'a' }]) {
      const out = await excludeVarsFactory.create(excludeVarsFactory.args.parse(args), env).apply(m, ctx);
      expect([...out.params.keys()]).toEqual(['b']);
    }
    expect(excludeVarsFactory.args.safeParse({}).success).toBe(false);
    // A job's pattern outside the linear-time subset is refused when the job loads, with the reason.
    for (const pattern of ['(a)\\1', 'a(?=b)', '(']) {
      for (const args of [{ pattern }, { exclude_vars: pattern }]) {
        const r = excludeVarsFactory.args.safeParse(args);
        expect(r.success).toBe(false);
        expect(JSON.stringify(r.error?.issues)).toContain('E_MODEL_NAME_PATTERN');
      }
    }
    expect(excludeVarsFactory.args.safeParse({ names: ['a'], pattern: 'b' }).success).toBe(false);
    expect(excludeVarsFactory.args.safeParse({ pattern: '(' }).success).toBe(false);
  });
});
