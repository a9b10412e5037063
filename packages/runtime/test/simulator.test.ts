import { decodeModel, encodeModel, model, tensor, type FilterFactory, type FLModel } from '@flare/core';
import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { simulateJob, simulatedSites } from '../src/simulator/simulate.js';
import { simulatedSitePolicy } from '../src/simulator/site-policy.js';
import { parseJobDefinition } from '../src/protocol/job-definition.js';
import type { RoundRecord } from '../src/server/job-store.js';
import { bundle, jobDefinition, learnerFactory, tempDir } from './helpers.js';

// A result filter that zeroes every tensor it sees: proves the site's scope filters run in the simulator.
const zeroing: FilterFactory<unknown> = {
  name: 'zero-all',
  args: z.object({}).passthrough() as z.ZodType<unknown>,
  create: () => ({
    name: 'zero-all',
    apply: (m: FLModel): FLModel => ({ ...m, params: new Map([...m.params].map(([k, t]) => [k, tensor(new Float32Array(t.data.length), [...t.shape])])) }),
  }),
};

describe('simulateJob: a job folder with virtual sites in one process', () => {
  it('runs an @ALL job on N sites to FINISHED with per-round metrics of every site and the global model', async () => {
    const rounds: RoundRecord[] = [];
    const r = await simulateJob({
      job: bundle(jobDefinition({ deploy: ['@ALL'], rounds: 3, min_clients: 3 })),
      sites: 3,
      workspace: await tempDir(),
      // Site i pulls w towards i + 1: the average pulls it towards 2.
      learners: (s) => new Map([['towards', learnerFactory(s.index + 1)]]),
      onRound: (h) => rounds.push(h),
    });
    expect(r.record.status, JSON.stringify(r.record.error)).toBe('FINISHED');
    expect(r.sites.map((s) => s.name)).toEqual(['site-1', 'site-2', 'site-3']);
    expect(rounds.map((h) => h.round)).toEqual([0, 1, 2]);
    const w = decodeModel(r.model!).params.get('w')!.data as Float32Array;
    expect(w[0]).toBeCloseTo(2 * (1 - 0.5 ** 3), 5);
    const last = r.record.history[2]!;
    expect(Object.keys(last.site_validation ?? {}).sort()).toEqual(['site-1', 'site-2', 'site-3']);
    expect(last.metrics['loss']).toBeGreaterThan(0);
  });

  it("applies the site's privacy scope filters exactly as a deployed site (a zeroing result filter leaves the model unchanged)", async () => {
    const filters = new Map([['zero-all', zeroing]]);
    const privacy = { scopes: [{ name: 'private', task_result_filters: [{ name: 'zero-all', args: {} }] }], default_scope: 'private' };
    const r = await simulateJob({
      job: bundle(jobDefinition({ deploy: ['@ALL'], rounds: 2, min_clients: 2, scope: 'private' })),
      sites: 2,
      workspace: await tempDir(),
      learners: () => new Map([['towards', learnerFactory(5)]]),
      filters,
      policy: (_s, d) => simulatedSitePolicy(d, filters, { privacy }),
    });
    expect(r.record.status, JSON.stringify(r.record.error)).toBe('FINISHED');
    expect([...(decodeModel(r.model!).params.get('w')!.data as Float32Array)]).toEqual([0, 0]);
  });

  it('a job whose learner no site has fails with the sites\' own code in its record (E_POLICY_COMPONENT), not a hang', async () => {
    const r = await simulateJob({
      job: bundle(jobDefinition({ deploy: ['@ALL'], rounds: 1, min_clients: 2 })),
      sites: 2,
      workspace: await tempDir(),
      learners: () => new Map([['towards', learnerFactory(1)]]),
      policy: (_s, d) => simulatedSitePolicy(d, new Map(), { components: { allow: ['something-else'] } }),
    });
    expect(r.record.status).toBe('FAILED');
    expect(r.record.refused['site-1']).toMatch(/^E_POLICY_COMPONENT/);
    expect(r.model).toBeUndefined();
  });

  it('every site checks the job\'s signature: a job signed elsewhere is refused by each site (E_POLICY_JOB_*), the job FAILED', async () => {
    const foreign = { ...bundle(jobDefinition({ deploy: ['@ALL'], rounds: 1, min_clients: 2 })), signature: new TextEncoder().encode('{"not":"a signature of this project"}') };
    const r = await simulateJob({ job: foreign, sites: 2, workspace: await tempDir(), learners: () => new Map([['towards', learnerFactory(1)]]) });
    expect(r.record.status).toBe('FAILED');
    expect(r.record.refused['site-1'] ?? r.record.error?.message).toMatch(/E_POLICY_JOB_/);
  });

  it('names the deploy list\'s sites, and refuses a site count that disagrees with it (E_RUNTIME_SIMULATION)', async () => {
    const d = parseJobDefinition(jobDefinition({ deploy: ['a', 'b'] }));
    expect(simulatedSites(d).map((s) => s.name)).toEqual(['a', 'b']);
    expect(simulatedSites(parseJobDefinition(jobDefinition({ deploy: ['@ALL'] }))).length).toBe(2);
    expect(expectFlareCode(() => simulatedSites(d, 3), 'E_RUNTIME_SIMULATION').message).toMatch(/2 named sites \(a, b\), not 3/);
    await expectFlareCodeAsync(simulateJob({ job: bundle(jobDefinition({ deploy: ['a', 'b'] })), sites: 5, workspace: await tempDir(), learners: () => new Map() }), 'E_RUNTIME_SIMULATION');
  });

  it('an invalid meta.json is refused before anything starts (E_RUNTIME_JOB_INVALID)', async () => {
    const bad = { meta: new TextEncoder().encode('{"name":"x","rounds":0}'), model: encodeModel(model({})), files: new Map<string, Uint8Array>() };
    await expectFlareCodeAsync(simulateJob({ job: bad, workspace: await tempDir(), learners: () => new Map() }), 'E_RUNTIME_JOB_INVALID');
  });
});
