import { expectFlareCode } from '@flare/core/testing';
import type { AuditEventInput, FilterContext } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { composeFilterChain, createFilterChain, parseJobFilters, parsePrivacyPolicy, resolvePrivacyScope, type FilterSpec } from '../src/index.js';
import { registry, tiny } from './fakes.js';


const policy = parsePrivacyPolicy(
  {
    scopes: [
      {
        name: 'private',
        task_data_filters: [{ name: 'exclude-vars', args: { names: ['x'], tag: 'site-in' } }],
        task_result_filters: [
          { name: 'percentile-privacy', args: { tag: 'site-out-1' } },
          { name: 'gaussian-dp', args: { epsilon: 1, delta: 1e-5, tag: 'site-out-2' } },
        ],
      },
    ],
    default_scope: 'private',
  },
  { registry },
);
const env = { site: 'site-1', workspace: '/tmp/unused' };

describe('filter chains', () => {
  it('runs the site\'s filters first, then the job\'s, per direction', async () => {
    const scope = resolvePrivacyScope(policy, 'private');
    const job = parseJobFilters([{ name: 'exclude-vars', args: { names: ['y'], tag: 'job-out' } }], { registry });
    const out = composeFilterChain(scope, 'task_result', job);
    expect(out.map((s) => `${s.origin}:${s.name}`)).toEqual(['site:percentile-privacy', 'site:gaussian-dp', 'job:exclude-vars']);
    const events: AuditEventInput[] = [];
    const ctx: FilterContext = { site: 'site-1', job: 'j1', round: 3, task: 'train', audit: (e) => (events.push(e), String(events.length)) };
    const result = await createFilterChain(out, env).apply(tiny(), ctx);
    expect(result.meta['trail']).toEqual(['site-out-1', 'site-out-2', 'job-out']);
    expect(events.map((e) => e.action)).toEqual(['filter_applied', 'filter_applied', 'filter_applied']);
    expect(events[2]).toMatchObject({ job: 'j1', data: { filter: 'exclude-vars', origin: 'job', position: 2, round: 3, task: 'train' } });
    expect(composeFilterChain(scope, 'task_data').map((s) => s.args)).toEqual([{ names: ['x'], tag: 'site-in' }]);
  });

  it('the job cannot remove or replace site filters: an empty job list still runs them', async () => {
    const scope = resolvePrivacyScope(policy);
    const result = await createFilterChain(composeFilterChain(scope, 'task_result', []), env).apply(tiny(), { site: 's', job: 'j', round: 0 });
    expect(result.meta['trail']).toEqual(['site-out-1', 'site-out-2']);
  });

  it('refuses site specs passed off as job filters (programmer misuse)', () => {
    const scope = resolvePrivacyScope(policy);
    expect(() => composeFilterChain(undefined, 'task_result', scope.taskResultFilters as FilterSpec[])).toThrow(TypeError);
  });

  it('with no privacy policy only the job\'s filters run', () => {
    const job = parseJobFilters('[{"name": "exclude-vars", "args": {"names": ["a"]}}]', { registry }, 'task_data');
    expect(composeFilterChain(undefined, 'task_data', job).map((s) => s.name)).toEqual(['exclude-vars']);
  });

  it('validates job filters like site filters: unknown names and bad args fail at load', () => {
    expectFlareCode(() => parseJobFilters([{ name: 'nope' }], { registry }), 'E_POLICY_FILTER_UNKNOWN');
    expectFlareCode(() => parseJobFilters([{ name: 'exclude-vars', args: { names: [] } }], { registry }), 'E_POLICY_FILTER_ARGS');
    expectFlareCode(() => parseJobFilters({ name: 'exclude-vars' }, { registry }), 'E_POLICY_PRIVACY_PARSE');
  });

  it('stops between filters when the task is aborted', async () => {
    const chain = createFilterChain(composeFilterChain(resolvePrivacyScope(policy), 'task_result'), env);
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(chain.apply(tiny(), { site: 's', job: 'j', round: 0, signal: ac.signal })).rejects.toThrow('cancelled');
  });
});
