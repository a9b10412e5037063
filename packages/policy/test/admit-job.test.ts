import { expectFlareCode } from '@flare/core/testing';
import type { AuditEventInput } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admitAbort, admitJob, parseAuthorizationPolicy, parseComponentPolicy, signAbort, signJob, type JobAdmissionPolicy } from '../src/index.js';
import { certificateCheck, issue, makeCa, scratch, type TestCert } from './helpers.js';

const tmp = scratch();
let root: TestCert, alice: TestCert, carol: TestCert, admin: TestCert, bob: TestCert, server: TestCert;
beforeAll(() => {
  root = makeCa(tmp.dir, 'project');
  alice = issue(tmp.dir, root, 'alice', { cn: 'alice@a.org', o: 'org_a', ou: 'admin', role: 'lead' });
  bob = issue(tmp.dir, root, 'bob', { cn: 'bob@a.org', o: 'org_a', ou: 'admin', role: 'lead' });
  carol = issue(tmp.dir, root, 'carol', { cn: 'carol@b.org', o: 'org_b', ou: 'admin', role: 'lead' });
  admin = issue(tmp.dir, root, 'admin', { cn: 'admin@a.org', o: 'org_a', ou: 'admin', role: 'project_admin' });
  server = issue(tmp.dir, root, 'server', { cn: 'server1', o: 'org_a', ou: 'server' });
});
afterAll(() => tmp.cleanup());

// site_a of FLARE's federated-policies example: only its own org's leads may submit; leads have byoc; a lead may
// abort jobs of their own org's submitters.
const authorization = parseAuthorizationPolicy({
  format_version: '1.0',
  permissions: {
    project_admin: 'any',
    org_admin: { submit_job: 'none', byoc: 'none' },
    lead: { submit_job: 'o:site', byoc: 'any', abort_job: 'o:submitter' },
    member: { view: 'any' },
  },
});
const enc = (s: string) => new TextEncoder().encode(s);
const plain = () => new Map([['meta.json', enc('{"name":"j"}')], ['app/model.safetensors', new Uint8Array(32)]]);
const withCode = () => new Map([...plain(), ['app/custom/net.py', enc('class Net: pass\n')]]);
const events: AuditEventInput[] = [];
const policy = (byoc: boolean): JobAdmissionPolicy => ({
  authorization,
  components: parseComponentPolicy({ allow: ['fedavg', 'tfjs-learner', 'gaussian-dp'], byoc }),
  siteOrg: 'org_a',
  projectName: 'hospitals',
  verifyCertificate: certificateCheck(root),
  audit: (e) => (events.push(e), undefined),
});
const request = (signer: TestCert, jobId: string, files = plain(), components = ['fedavg']) => ({
  jobId,
  files,
  components,
  signature: signJob({ certPem: signer.cert, privateKey: signer.key }, { projectName: 'hospitals', jobId, files }),
});

describe('admitJob', () => {
  it('admits a signed job from an authorized submitter using allowed components; the submitter comes from the signature', () => {
    const a = admitJob(request(alice, 'j1', plain(), ['fedavg', 'tfjs-learner', 'fedavg']), policy(false));
    expect(a).toMatchObject({ job: 'j1', submitter: { name: 'alice@a.org', org: 'org_a', role: 'lead', type: 'admin' }, components: ['fedavg', 'tfjs-learner', 'fedavg'], byoc: false });
    expect(events.at(-1)).toMatchObject({ action: 'job_admitted', job: 'j1', user: 'alice@a.org', data: { manifest: a.manifestSha256, role: 'lead' } });
  });

  it('verifies the signature before anything else, and audits the refusal (E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_SIGNER, E_POLICY_JOB_TAMPERED)', () => {
    expectFlareCode(() => admitJob({ ...request(alice, 'j2'), signature: undefined }, policy(false)), 'E_POLICY_JOB_UNSIGNED');
    expect(events.at(-1)).toMatchObject({ action: 'job_refused', job: 'j2', data: { code: 'E_POLICY_JOB_UNSIGNED' } });
    expectFlareCode(() => admitJob(request(server, 'j2'), policy(false)), 'E_POLICY_JOB_SIGNER');
    const changed = request(alice, 'j2');
    changed.files.set('meta.json', enc('{"name":"other"}'));
    expectFlareCode(() => admitJob(changed, policy(false)), 'E_POLICY_JOB_TAMPERED');
    expect(events.at(-1)).toMatchObject({ action: 'job_refused', data: { code: 'E_POLICY_JOB_TAMPERED' } });
  });

  it("re-checks submit_job under the site's own policy for the certificate's submitter (E_POLICY_DENIED)", () => {
    const e = expectFlareCode(() => admitJob(request(carol, 'j3'), policy(false)), 'E_POLICY_DENIED');
    expect(e.message).toContain("user 'carol@b.org' is not authorized for 'submit_job'");
    expect(events.at(-1)).toMatchObject({ action: 'job_refused', user: 'carol@b.org', data: { code: 'E_POLICY_DENIED' } });
  });

  it('refuses components not on the allow-list, naming each (E_POLICY_COMPONENT)', () => {
    const e = expectFlareCode(() => admitJob(request(alice, 'j4', plain(), ['fedavg', 'pickle-loader', 'shell']), policy(false)), 'E_POLICY_COMPONENT');
    expect(e.message).toBe('job \'j4\' uses components this site does not allow: "pickle-loader", "shell"');
  });

  it('admits signed custom/ code when the site consents and the submitter has byoc', () => {
    expect(admitJob(request(alice, 'j5', withCode()), policy(true)).byoc).toBe(true);
  });

  it('refuses custom/ code when the site does not consent (E_POLICY_BYOC_DISABLED)', () => {
    expectFlareCode(() => admitJob(request(alice, 'j6', withCode()), policy(false)), 'E_POLICY_BYOC_DISABLED');
  });

  it('refuses custom/ code from a submitter without the byoc right (E_POLICY_BYOC_RIGHT)', () => {
    const noByoc = { ...policy(true), authorization: parseAuthorizationPolicy({ format_version: '1.0', permissions: { lead: { submit_job: 'any', byoc: 'none' } } }) };
    expectFlareCode(() => admitJob(request(alice, 'j7', withCode()), noByoc), 'E_POLICY_BYOC_RIGHT');
  });
});

describe('admitAbort', () => {
  const abort = (signer: TestCert, jobId: string) => signAbort({ certPem: signer.cert, privateKey: signer.key }, { projectName: 'hospitals', jobId });
  const submitter = { name: 'alice@a.org', org: 'org_a', type: 'admin' as const, role: 'lead' };

  it('obeys a signed abort from an admin the site authorizes for abort_job on this submitter\'s job', () => {
    expect(admitAbort({ jobId: 'j1', signature: abort(bob, 'j1'), submitter }, policy(false)).signer.name).toBe('bob@a.org');
    expect(admitAbort({ jobId: 'j1', signature: abort(admin, 'j1'), submitter }, policy(false)).signer.role).toBe('project_admin');
    expect(events.at(-1)).toMatchObject({ action: 'abort_admitted', job: 'j1', user: 'admin@a.org' });
  });

  it('never obeys an unsigned abort (E_POLICY_JOB_UNSIGNED) or one the server signed (E_POLICY_JOB_SIGNER)', () => {
    expectFlareCode(() => admitAbort({ jobId: 'j1', signature: undefined, submitter }, policy(false)), 'E_POLICY_JOB_UNSIGNED');
    expect(events.at(-1)).toMatchObject({ action: 'abort_refused', data: { code: 'E_POLICY_JOB_UNSIGNED' } });
    expectFlareCode(() => admitAbort({ jobId: 'j1', signature: abort(server, 'j1'), submitter }, policy(false)), 'E_POLICY_JOB_SIGNER');
  });

  it('refuses an abort of another job (E_POLICY_JOB_BINDING) and an admin the site does not authorize (E_POLICY_DENIED)', () => {
    expectFlareCode(() => admitAbort({ jobId: 'j1', signature: abort(bob, 'j9'), submitter }, policy(false)), 'E_POLICY_JOB_BINDING');
    const e = expectFlareCode(() => admitAbort({ jobId: 'j1', signature: abort(carol, 'j1'), submitter }, policy(false)), 'E_POLICY_DENIED');
    expect(e.message).toContain("user 'carol@b.org' is not authorized for 'abort_job'");
    expect(events.at(-1)).toMatchObject({ action: 'abort_refused', user: 'carol@b.org', data: { code: 'E_POLICY_DENIED' } });
  });
});

