import { expectFlareCode } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { parsePrivacyPolicy, resolvePrivacyScope } from '../src/index.js';
import { registry } from './fakes.js';


const sample = {
  scopes: [
    {
      name: 'public',
      properties: { train_dataset: '/data/public/train' },
      task_result_filters: [{ name: 'percentile-privacy', args: { percentile: 10, gamma: 0.02 } }],
      task_data_filters: [],
    },
    {
      name: 'private',
      task_result_filters: [
        { name: 'exclude-vars', args: { names: ['fc.bias'] } },
        { path: 'gaussian-dp', id: 'dp', args: { epsilon: 1, delta: 1e-5 } },
      ],
    },
  ],
  default_scope: 'public',
};

describe('parsePrivacyPolicy', () => {
  it('reads scopes, properties, both filter lists and the default scope; validates args with each filter\'s schema', () => {
    const p = parsePrivacyPolicy(JSON.stringify(sample), { registry });
    expect([...p.scopes.keys()]).toEqual(['public', 'private']);
    expect(p.defaultScope).toBe('public');
    const pub = p.scopes.get('public')!;
    expect(pub.properties).toEqual({ train_dataset: '/data/public/train' });
    expect(pub.taskDataFilters).toEqual([]);
    expect(pub.taskResultFilters[0]).toMatchObject({ name: 'percentile-privacy', origin: 'site', args: { percentile: 10, gamma: 0.02, tag: 'percentile-privacy' } });
    const priv = p.scopes.get('private')!;
    expect(priv.taskResultFilters.map((f) => f.name)).toEqual(['exclude-vars', 'gaussian-dp']);
    // Schema defaults are applied at load ("clip" default 1), and FLARE's "path" and "id" are accepted.
    expect(priv.taskResultFilters[1]).toMatchObject({ id: 'dp', args: { epsilon: 1, delta: 1e-5, clip: 1 } });
  });

  it('refuses an unknown filter name at load, listing the registered ones (E_POLICY_FILTER_UNKNOWN)', () => {
    const bad = { scopes: [{ name: 'x', task_result_filters: [{ name: 'gausian-dp', args: { epsilon: 1, delta: 1e-5 } }] }] };
    const e = expectFlareCode(() => parsePrivacyPolicy(bad, { registry }), 'E_POLICY_FILTER_UNKNOWN');
    expect(e.message).toContain('scope "x" task_result_filters[0]: no filter named "gausian-dp"');
    expect(e.message).toContain('exclude-vars, gaussian-dp, percentile-privacy');
  });

  it('refuses args that fail the filter\'s schema, naming the path but not the value (E_POLICY_FILTER_ARGS)', () => {
    const typo = { scopes: [{ name: 'x', task_data_filters: [{ name: 'gaussian-dp', args: { epsilon: 1, delt: 1e-5 } }] }] };
    const e = expectFlareCode(() => parsePrivacyPolicy(typo, { registry }), 'E_POLICY_FILTER_ARGS');
    expect(e.message).toMatch(/scope "x" task_data_filters\[0\] "gaussian-dp": invalid args: .*delt/);
    const range = { scopes: [{ name: 'x', task_result_filters: [{ name: 'percentile-privacy', args: { percentile: 130 } }] }] };
    expectFlareCode(() => parsePrivacyPolicy(range, { registry }), 'E_POLICY_FILTER_ARGS');
    const secret = { scopes: [{ name: 'x', task_result_filters: [{ name: 'gaussian-dp', args: { epsilon: 'hunter2', delta: 0.1 } }] }] };
    expect(expectFlareCode(() => parsePrivacyPolicy(secret, { registry }), 'E_POLICY_FILTER_ARGS').message).not.toContain('hunter2');
  });

  const malformed: Array<[string, unknown]> = [
    ['no scopes', { default_scope: 'x' }],
    ['an empty scope list', { scopes: [] }],
    ['a scope without a name', { scopes: [{ task_result_filters: [] }] }],
    ['an unknown key in a scope', { scopes: [{ name: 'a', task_results_filters: [] }] }],
    ['an unknown top-level key', { scopes: [{ name: 'a' }], default: 'a' }],
    ['a filter with both name and path', { scopes: [{ name: 'a', task_result_filters: [{ name: 'exclude-vars', path: 'exclude-vars', args: { names: ['b'] } }] }] }],
    ['a filter with neither name nor path', { scopes: [{ name: 'a', task_result_filters: [{ args: {} }] }] }],
    ['a duplicate scope', { scopes: [{ name: 'a' }, { name: 'a' }] }],
    ['a default_scope that is not a scope', { scopes: [{ name: 'a' }], default_scope: 'b' }],
    ['not JSON', '{"scopes": ['],
  ];
  for (const [title, value] of malformed) {
    it(`refuses ${title} (E_POLICY_PRIVACY_PARSE)`, () => {
      expectFlareCode(() => parsePrivacyPolicy(value, { registry }), 'E_POLICY_PRIVACY_PARSE');
    });
  }

  it('requires a Map registry (programmer misuse is a TypeError)', () => {
    expect(() => parsePrivacyPolicy(sample, { registry: {} as unknown as Map<string, never> })).toThrow(TypeError);
  });
});

describe('resolvePrivacyScope', () => {
  const p = parsePrivacyPolicy(sample, { registry });
  it('returns the named scope, and the default scope for a job that names none', () => {
    expect(resolvePrivacyScope(p, 'private').name).toBe('private');
    expect(resolvePrivacyScope(p).name).toBe('public');
    expect(resolvePrivacyScope(p, '').name).toBe('public');
    expect(resolvePrivacyScope(p, null).name).toBe('public');
  });
  it('refuses a scope the site does not define (E_POLICY_SCOPE)', () => {
    expect(expectFlareCode(() => resolvePrivacyScope(p, 'foo'), 'E_POLICY_SCOPE').message).toBe('privacy scope "foo" is not defined at this site (scopes: public, private)');
  });
  it('refuses a job with no scope when the site has no default (E_POLICY_SCOPE)', () => {
    const noDefault = parsePrivacyPolicy({ scopes: [{ name: 'a' }] }, { registry });
    expectFlareCode(() => resolvePrivacyScope(noDefault), 'E_POLICY_SCOPE');
  });
});
