// FLARE's own authorization results and policy files (../shared/vectors/flare, NVIDIA/NVFlare @ f3b7c1bf,
// Apache-2.0). authz_cases.derived.json holds 1,950 results of FLARE's evaluator (nvflare/fuel/sec/authz.py)
// over four real policies; we match every one except the cases where flare-compat.md says we differ, listed
// below by id (matrix#N / edge#N = index in the file's arrays).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { FlareError, type FilterFactory } from '@flare/core';
import { authorize, parseAuthorizationPolicy, parsePrivacyPolicy, resolvePrivacyScope, type Person } from '../src/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const vectors = join(process.env['FLARE_VECTORS'] ?? resolve(root, '../shared/vectors'), 'flare');
const read = (file: string): unknown => JSON.parse(readFileSync(join(vectors, file), 'utf8'));

interface Case {
  policy: string | unknown;
  site_org: string;
  right: string;
  user: Person;
  submitter: Person | null;
  expected_allowed: boolean | null;
  expected_error: string;
  description?: string;
  parse_error?: string;
}
const derived = read('authz_cases.derived.json') as { command_categories: Record<string, string>; policies: Record<string, unknown>; matrix_cases: Case[]; edge_cases: Case[] };
const commandCategories = derived.command_categories;

/** Where we differ from FLARE on purpose (reference/flare-compat.md, "We differ, on purpose"). */
const DIFFERENCES = new Map<string, { allowed: boolean; why: string }>([
  ['edge#23', { allowed: true, why: 'the requested right is normalized: SUBMIT_JOB matches submit_job' }],
  ['edge#24', { allowed: false, why: 'no super role (SUPER, after folding)' }],
  ['edge#25', { allowed: false, why: 'no super role' }],
  ['edge#26', { allowed: false, why: 'o:submitter is false when there is no submitter' }],
]);

const evaluate = (policy: unknown, c: Case) => authorize(parseAuthorizationPolicy(policy, { commandCategories }), { right: c.right, user: c.user, submitter: c.submitter, siteOrg: c.site_org });

describe('FLARE authorization conformance (authz_cases.derived.json)', () => {
  it('holds 1,950 cases: 1,920 matrix cases over 4 policies and 30 edge cases', () => {
    expect(derived.matrix_cases.length + derived.edge_cases.length).toBe(1950);
  });

  it('the differences listed here are exactly the cases flare-compat.md names', () => {
    const descriptions = [...DIFFERENCES.keys()].map((id) => derived.edge_cases[Number(id.slice(5))]!.description);
    expect(descriptions).toEqual([
      'the requested right (ctx.right) is NOT normalized: upper-case right never matches',
      "'super' role check happens after lower-casing (SUPER also bypasses)",
      "'super' role bypasses policy (testing backdoor in Authorizer.authorize)",
      'o:submitter with no submitter and user with empty org -> True (both empty)',
    ]);
  });

  it('matches FLARE on all 1,920 matrix cases (decision and denial sentence)', () => {
    const policies = new Map(Object.entries(derived.policies).map(([name, p]) => [name, parseAuthorizationPolicy(JSON.stringify(p), { commandCategories })]));
    const mismatches: string[] = [];
    derived.matrix_cases.forEach((c, i) => {
      const d = authorize(policies.get(c.policy as string)!, { right: c.right, user: c.user, submitter: c.submitter, siteOrg: c.site_org });
      if (d.allowed !== c.expected_allowed || (!d.allowed && d.reason !== c.expected_error)) mismatches.push(`matrix#${i}`);
    });
    expect(mismatches).toEqual([]);
  });

  derived.edge_cases.forEach((c, i) => {
    const id = `edge#${i}`;
    const differ = DIFFERENCES.get(id);
    it(`${id} ${c.description}${differ ? ` — we differ: ${differ.why}` : ''}`, () => {
      if (c.parse_error) {
        let error: unknown;
        try {
          evaluate(c.policy, c);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(FlareError);
        expect((error as FlareError).code).toBe('E_POLICY_AUTHZ_PARSE');
        // FLARE names Python types ("<class 'bool'>"); we name JSON types ("a boolean").
        expect((error as FlareError).message).toContain(c.parse_error.replace("<class 'bool'>", 'a boolean'));
        return;
      }
      const d = evaluate(c.policy, c);
      if (differ) {
        expect(d.allowed).not.toBe(c.expected_allowed);
        expect(d.allowed).toBe(differ.allowed);
        return;
      }
      expect(d.allowed).toBe(c.expected_allowed);
      if (!d.allowed) expect(d.reason).toBe(c.expected_error);
    });
  });
});

describe('FLARE integration tests (authz_cases.integration.json, default policy)', () => {
  // tests/integration_test/data/projects/authz.yml: the server localhost0 and site-1 are org_a.
  const project = new Map<string, Person>([
    ['admin@a.org', { name: 'admin@a.org', org: 'org_a', role: 'org_admin' }],
    ['admin@b.org', { name: 'admin@b.org', org: 'org_b', role: 'org_admin' }],
    ['trainer@a.org', { name: 'trainer@a.org', org: 'org_a', role: 'lead' }],
    ['trainer@b.org', { name: 'trainer@b.org', org: 'org_b', role: 'lead' }],
    ['user@a.org', { name: 'user@a.org', org: 'org_a', role: 'member' }],
    ['user@b.org', { name: 'user@b.org', org: 'org_b', role: 'member' }],
  ]);
  const policy = parseAuthorizationPolicy(derived.policies['default_authz'], { commandCategories });
  const rights: Record<string, string> = { submit_job: 'submit_job', abort_job: 'abort_job', clone_job: 'clone_job', list_job: 'list_jobs', shell_commands: 'ls' };
  const integration = read('authz_cases.integration.json') as { cases: Array<{ source: string; test_name: string; steps: Array<{ actions: string[]; admin_user_name: string; result: { type: string; data?: unknown } }> }> };
  const checks: Array<{ title: string; right: string; user: Person; submitter: Person | null; allowed: boolean }> = [];
  for (const c of integration.cases) {
    let submitter: Person | null = null;
    for (const step of c.steps) {
      const [command] = step.actions[0]!.split(' ');
      const user = project.get(step.admin_user_name);
      const denied = JSON.stringify(step.result.data ?? '').includes('is not authorized');
      if (command === 'submit_job' && user && !denied) submitter = user;
      // clone_job.yml clones "the previous np_sag", submitted by lead a in the file's first case.
      if (command === 'clone_job' && submitter === null) submitter = project.get('trainer@a.org')!;
      const right = command === undefined ? undefined : rights[command];
      if (!user || !right) continue;
      checks.push({ title: `${c.source.split('/').pop()}: ${c.test_name}: ${step.actions[0]} by ${user.name}`, right, user, submitter: right === 'submit_job' ? null : submitter, allowed: !denied });
    }
  }
  it('extracts the authorization decisions of FLARE\'s integration tests', () => {
    expect(checks.length).toBeGreaterThanOrEqual(12);
  });
  for (const check of checks) {
    it(`${check.title}: ${check.allowed ? 'allowed' : 'denied'}`, () => {
      expect(authorize(policy, { right: check.right, user: check.user, submitter: check.submitter, siteOrg: 'org_a' }).allowed).toBe(check.allowed);
    });
  }
});

describe('FLARE federated-policies example (README.rst tables)', () => {
  const siteA = parseAuthorizationPolicy(readFileSync(join(vectors, 'authz_cases_source/examples__advanced__federated-policies__policies__site_a__authorization.json'), 'utf8'), { commandCategories });
  const person = (name: string, org: string, role: string): Person => ({ name, org, role });
  it('site_a: trainer@a.org may submit and clone its own job; trainer@b.org may not clone it; admin@a.org may not submit; site_a refuses trainer@b.org\'s job', () => {
    const a = person('trainer@a.org', 'org_a', 'lead');
    const b = person('trainer@b.org', 'org_b', 'lead');
    expect(authorize(siteA, { right: 'submit_job', user: a, siteOrg: 'org_a' }).allowed).toBe(true);
    expect(authorize(siteA, { right: 'clone_job', user: a, submitter: a, siteOrg: 'org_a' }).allowed).toBe(true);
    expect(authorize(siteA, { right: 'clone_job', user: b, submitter: a, siteOrg: 'org_a' }).allowed).toBe(false);
    expect(authorize(siteA, { right: 'submit_job', user: person('admin@a.org', 'org_a', 'org_admin'), siteOrg: 'org_a' }).allowed).toBe(false);
    expect(authorize(siteA, { right: 'submit_job', user: b, siteOrg: 'org_a' }).allowed).toBe(false);
  });

  it('site_b privacy.json: public has no filters, test applies TestFilter both ways, private applies PercentilePrivacy to results, no scope means public, foo is refused', () => {
    // The runtime registers filters under FLARE's class paths too; here, stand-ins with the same arg schemas.
    const factory = (name: string, args: z.ZodType): FilterFactory => ({ name, args, create: () => ({ name, apply: (m) => m }) });
    const registry = new Map<string, FilterFactory>([
      ['test_filter.TestFilter', factory('test', z.strictObject({ local_name: z.string() }))],
      ['nvflare.app_common.filters.percentile_privacy.PercentilePrivacy', factory('percentile', z.strictObject({ percentile: z.number().int().min(0).max(100), gamma: z.number().positive() }))],
    ]);
    const privacy = parsePrivacyPolicy(readFileSync(join(vectors, 'authz_cases_source/examples__advanced__federated-policies__policies__site_b__privacy.json'), 'utf8'), { registry });
    const names = (scope: string | undefined, dir: 'taskDataFilters' | 'taskResultFilters') => resolvePrivacyScope(privacy, scope)[dir].map((f) => f.name);
    expect([names('public', 'taskDataFilters'), names('public', 'taskResultFilters')]).toEqual([[], []]);
    expect([names('test', 'taskDataFilters'), names('test', 'taskResultFilters')]).toEqual([['test_filter.TestFilter'], ['test_filter.TestFilter']]);
    expect(names('private', 'taskResultFilters')).toEqual(['nvflare.app_common.filters.percentile_privacy.PercentilePrivacy']);
    expect(resolvePrivacyScope(privacy, 'private').taskResultFilters[0]!.args).toEqual({ percentile: 10, gamma: 7.5 });
    expect(resolvePrivacyScope(privacy).name).toBe('public');
    expect(() => resolvePrivacyScope(privacy, 'foo')).toThrow(/privacy scope "foo" is not defined/);
  });
});
