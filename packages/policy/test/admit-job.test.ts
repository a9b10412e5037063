import type { AuditEventInput } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admitJob, parseAuthorizationPolicy, parseComponentPolicy, signByoc, type JobAdmissionPolicy } from '../src/index.js';
import { expectCode, issue, makeCa, scratch, type TestCert } from './helpers.js';

const tmp = scratch();
let root: TestCert, alice: TestCert, carol: TestCert;
beforeAll(() => {
  root = makeCa(tmp.dir, 'project');
  alice = issue(tmp.dir, root, 'alice', { cn: 'alice@a.org', o: 'org_a' });
  carol = issue(tmp.dir, root, 'carol', { cn: 'carol@b.org', o: 'org_b' });
});
afterAll(() => tmp.cleanup());

// site_a of FLARE's federated-policies example: only its own org's leads may submit; leads have byoc.
const authorization = parseAuthorizationPolicy({
  format_version: '1.0',
  permissions: { project_admin: 'any', org_admin: { submit_job: 'none', byoc: 'none' }, lead: { submit_job: 'o:site', byoc: 'any' }, member: { view: 'any' } },
});
const alicePerson = { name: 'alice@a.org', org: 'org_a', role: 'lead' };
const files = new Map([['app/custom/net.py', new TextEncoder().encode('class Net: pass\n')]]);
const events: AuditEventInput[] = [];
const policy = (byoc: boolean): JobAdmissionPolicy => ({
  authorization,
  components: parseComponentPolicy({ allow: ['fedavg', 'tfjs-learner', 'gaussian-dp'], byoc }),
  siteOrg: 'org_a',
  rootCa: root.cert,
  audit: (e) => (events.push(e), undefined),
});

describe('admitJob', () => {
  it('admits a job from an authorized submitter using allowed components', () => {
    const a = admitJob({ job: 'j1', submitter: alicePerson, components: ['fedavg', 'tfjs-learner', 'fedavg'] }, policy(false));
    expect(a).toEqual({ job: 'j1', components: ['fedavg', 'tfjs-learner', 'fedavg'], byoc: false });
    expect(events.at(-1)).toMatchObject({ action: 'job_admitted', job: 'j1', user: 'alice@a.org' });
  });

  it('re-checks submit_job under the site\'s own policy (E_POLICY_DENIED)', () => {
    const e = expectCode(() => admitJob({ job: 'j2', submitter: { name: 'carol@b.org', org: 'org_b', role: 'lead' }, components: ['fedavg'] }, policy(false)), 'E_POLICY_DENIED');
    expect(e.message).toContain("user 'carol@b.org' is not authorized for 'submit_job'");
    expect(events.at(-1)).toMatchObject({ action: 'job_refused', data: { code: 'E_POLICY_DENIED' } });
  });

  it('refuses components not on the allow-list, naming each (E_POLICY_COMPONENT)', () => {
    const e = expectCode(() => admitJob({ job: 'j3', submitter: alicePerson, components: ['fedavg', 'pickle-loader', 'shell'] }, policy(false)), 'E_POLICY_COMPONENT');
    expect(e.message).toBe('job \'j3\' uses components this site does not allow: "pickle-loader", "shell"');
  });

  it('admits signed job code when the site consents and the submitter has byoc', () => {
    const byoc = { files, signature: signByoc(files, alice.key), certificate: alice.cert };
    expect(admitJob({ job: 'j4', submitter: alicePerson, components: ['fedavg'], byoc }, policy(true)).byoc).toBe(true);
  });

  it('refuses job code when the site does not consent (E_POLICY_BYOC_DISABLED)', () => {
    const byoc = { files, signature: signByoc(files, alice.key), certificate: alice.cert };
    expectCode(() => admitJob({ job: 'j5', submitter: alicePerson, components: [], byoc }, policy(false)), 'E_POLICY_BYOC_DISABLED');
  });

  it('refuses job code from a submitter without the byoc right (E_POLICY_BYOC_RIGHT)', () => {
    const admin = { name: 'admin@a.org', org: 'org_a', role: 'project_admin' };
    const noByoc = { ...policy(true), authorization: parseAuthorizationPolicy({ format_version: '1.0', permissions: { lead: { submit_job: 'any', byoc: 'none' } } }) };
    const byoc = { files, signature: signByoc(files, alice.key), certificate: alice.cert };
    expectCode(() => admitJob({ job: 'j6', submitter: alicePerson, components: [], byoc }, noByoc), 'E_POLICY_BYOC_RIGHT');
    // project_admin has "any": passes the right, then fails the signature check (signed by alice, not admin).
    expectCode(() => admitJob({ job: 'j6', submitter: admin, components: [], byoc }, policy(true)), 'E_POLICY_BYOC_SIGNATURE');
  });

  it('refuses unsigned or foreign-signed job code (E_POLICY_BYOC_SIGNATURE) and audits it', () => {
    const unsigned = { files, signature: '', certificate: alice.cert };
    expectCode(() => admitJob({ job: 'j7', submitter: alicePerson, components: [], byoc: unsigned }, policy(true)), 'E_POLICY_BYOC_SIGNATURE');
    expect(events.at(-1)).toMatchObject({ action: 'job_refused', job: 'j7', data: { code: 'E_POLICY_BYOC_SIGNATURE' } });
    const foreign = { files, signature: signByoc(files, carol.key), certificate: carol.cert };
    expectCode(() => admitJob({ job: 'j8', submitter: alicePerson, components: [], byoc: foreign }, policy(true)), 'E_POLICY_BYOC_SIGNATURE');
  });
});
