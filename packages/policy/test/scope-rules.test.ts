import { expectFlareCode } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { checkLocalModelRelease, checkScopeAggregation, parsePrivacyPolicy, resolvePrivacyScope } from '../src/index.js';
import { registry } from './fakes.js';

const policy = parsePrivacyPolicy(
  {
    scopes: [
      { name: 'open' },
      { name: 'masked', secure_aggregation: 'required', share_local_model: false },
      { name: 'explicit', secure_aggregation: 'allowed', share_local_model: true },
    ],
    default_scope: 'open',
  },
  { registry },
);

describe('privacy scope rules on aggregation and local models', () => {
  it('reads secure_aggregation and share_local_model, with the defaults allowed and true', () => {
    expect(resolvePrivacyScope(policy, 'open')).toMatchObject({ secureAggregation: 'allowed', shareLocalModel: true });
    expect(resolvePrivacyScope(policy, 'masked')).toMatchObject({ secureAggregation: 'required', shareLocalModel: false });
    expect(resolvePrivacyScope(policy, 'explicit')).toMatchObject({ secureAggregation: 'allowed', shareLocalModel: true });
  });

  it('refuses a value outside the enum or of the wrong type (E_POLICY_PRIVACY_PARSE)', () => {
    expectFlareCode(() => parsePrivacyPolicy({ scopes: [{ name: 'x', secure_aggregation: 'preferred' }] }, { registry }), 'E_POLICY_PRIVACY_PARSE');
    expectFlareCode(() => parsePrivacyPolicy({ scopes: [{ name: 'x', share_local_model: 'no' }] }, { registry }), 'E_POLICY_PRIVACY_PARSE');
  });

  it('a scope requiring secure aggregation refuses any other workflow (E_POLICY_SECAGG_REQUIRED) and takes a secure one', () => {
    const masked = resolvePrivacyScope(policy, 'masked');
    const e = expectFlareCode(() => checkScopeAggregation(masked, { secure: false, workflow: 'scatter_and_gather' }), 'E_POLICY_SECAGG_REQUIRED');
    expect(e.message).toMatch(/"masked"/);
    expect(e.message).toMatch(/scatter_and_gather/);
    checkScopeAggregation(masked, { secure: true, workflow: 'secure_aggregation' });
    checkScopeAggregation(resolvePrivacyScope(policy, 'open'), { secure: false, workflow: 'cyclic' });
    checkScopeAggregation(undefined, { secure: false, workflow: 'cyclic' });
  });

  it('a scope keeping the local model refuses to release it (E_POLICY_LOCAL_MODEL); others release it', () => {
    expectFlareCode(() => checkLocalModelRelease(resolvePrivacyScope(policy, 'masked')), 'E_POLICY_LOCAL_MODEL');
    checkLocalModelRelease(resolvePrivacyScope(policy, 'open'));
    checkLocalModelRelease(undefined);
  });
});
