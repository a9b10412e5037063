import { expectFlareCode } from '@flare/core/testing';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VerifiedSignatures, checkJobFreshness, signAbort, signJob, verifyAbort, verifyJob, type JobSignature, type JobVerifyOptions } from '../src/index.js';
import { certificateCheck, issue, makeCa, scratch, type TestCert } from './helpers.js';

// Certificates made by the real openssl CLI in @flare/pki's subject layout: a project root, admins of each
// role, the server, an admin of a rogue CA (a "project_admin" the project never provisioned), an admin
// certificate without a role.
const tmp = scratch('flare-job-sig-');
let root: TestCert, lead: TestCert, leadRsa: TestCert, leadEd: TestCert, projectAdmin: TestCert, member: TestCert, server: TestCert, rogueCa: TestCert, rogueAdmin: TestCert, noRole: TestCert;
beforeAll(() => {
  root = makeCa(tmp.dir, 'project');
  lead = issue(tmp.dir, root, 'lead', { cn: 'lead@a.org', o: 'org_a', ou: 'admin', role: 'lead' });
  leadRsa = issue(tmp.dir, root, 'lead-rsa', { cn: 'lead@a.org', o: 'org_a', ou: 'admin', role: 'lead', kind: 'rsa' });
  leadEd = issue(tmp.dir, root, 'lead-ed', { cn: 'lead@a.org', o: 'org_a', ou: 'admin', role: 'lead', kind: 'ed25519' });
  projectAdmin = issue(tmp.dir, root, 'padmin', { cn: 'admin@a.org', o: 'org_a', ou: 'admin', role: 'project_admin' });
  member = issue(tmp.dir, root, 'member', { cn: 'member@b.org', o: 'org_b', ou: 'admin', role: 'member' });
  server = issue(tmp.dir, root, 'server', { cn: 'server1', o: 'org_a', ou: 'server', ext: ['basicConstraints=critical,CA:FALSE', 'extendedKeyUsage=serverAuth,clientAuth'] });
  rogueCa = makeCa(tmp.dir, 'rogue');
  rogueAdmin = issue(tmp.dir, rogueCa, 'rogue-admin', { cn: 'admin@evil.org', o: 'org_a', ou: 'admin', role: 'project_admin' });
  noRole = issue(tmp.dir, root, 'norole', { cn: 'nobody@a.org', o: 'org_a', ou: 'admin' });
});
afterAll(() => tmp.cleanup());

const enc = (s: string) => new TextEncoder().encode(s);
const JOB = '3b241101-e2bb-4255-8caf-4136c566a962';
const files = () =>
  new Map<string, Uint8Array>([
    ['meta.json', enc('{"name":"spam","min_clients":2,"deploy_map":{"app":["@ALL"]}}')],
    ['app/config/config_fed_client.json', enc('{"format_version":2}')],
    ['app/model.safetensors', Uint8Array.from({ length: 256 }, (_, i) => i)],
  ]);
const key = (c: TestCert) => ({ certPem: c.cert, privateKey: c.key });
const sign = (c: TestCert, f = files(), jobId = JOB) => signJob(key(c), { projectName: 'hospitals', jobId, files: f });
const options = (overrides: Partial<JobVerifyOptions> = {}): JobVerifyOptions => ({ projectName: 'hospitals', jobId: JOB, verifyCertificate: certificateCheck(root), ...overrides });

describe('signJob / verifyJob', () => {
  it('verifies a job signed by an admin (ECDSA P-256, RSA-PSS, Ed25519); the submitter and role come from the certificate', () => {
    for (const c of [lead, leadRsa, leadEd]) {
      const v = verifyJob(sign(c), files(), options());
      expect(v.submitter).toEqual({ name: 'lead@a.org', org: 'org_a', type: 'admin', role: 'lead' });
      expect(v).toMatchObject({ project: 'hospitals', job: JOB, byoc: false, files: ['app/config/config_fed_client.json', 'app/model.safetensors', 'meta.json'] });
      expect(v.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('survives JSON transport (the signature is plain data) and marks custom/ code as BYOC', () => {
    const f = files();
    f.set('app/custom/learner.py', enc('print("train")\n'));
    const wire: unknown = JSON.parse(JSON.stringify(sign(lead, f)));
    expect(verifyJob(wire, f, options()).byoc).toBe(true);
  });

  it('the manifest is bound to the project, the job id and every file; map order does not matter', () => {
    const s = sign(lead);
    expect(verifyJob(s, new Map([...files()].reverse()), options()).job).toBe(JOB);
    expect(Object.keys(s.files).sort()).toEqual(['app/config/config_fed_client.json', 'app/model.safetensors', 'meta.json']);
  });

  describe('a hostile server (each refusal with its code)', () => {
    it('cannot invent a submitter: a job signed with the server\'s own certificate (E_POLICY_JOB_SIGNER)', () => {
      const e = expectFlareCode(() => verifyJob(sign(server), files(), options()), 'E_POLICY_JOB_SIGNER');
      expect(e.message).toMatch(/"server" certificate: only admins sign/);
    });

    it('cannot name a project_admin that does not exist: a certificate from another root (E_POLICY_JOB_SIGNER)', () => {
      const e = expectFlareCode(() => verifyJob(sign(rogueAdmin), files(), options()), 'E_POLICY_JOB_SIGNER');
      expect(e.message).toMatch(/E_CERT_UNTRUSTED/);
    });

    it('cannot claim a real lead who never submitted: the lead\'s certificate on someone else\'s signature (E_POLICY_JOB_TAMPERED)', () => {
      const forged: JobSignature = { ...sign(member), certificate: lead.cert };
      const e = expectFlareCode(() => verifyJob(forged, files(), options()), 'E_POLICY_JOB_TAMPERED');
      expect(e.message).toMatch(/does not verify with "lead@a.org"'s certificate/);
    });

    it('cannot send a job without a signature, or with a malformed one (E_POLICY_JOB_UNSIGNED)', () => {
      expectFlareCode(() => verifyJob(undefined, files(), options()), 'E_POLICY_JOB_UNSIGNED');
      expectFlareCode(() => verifyJob(null, files(), options()), 'E_POLICY_JOB_UNSIGNED');
      const { signature: _s, ...unsigned } = sign(lead);
      expectFlareCode(() => verifyJob(unsigned, files(), options()), 'E_POLICY_JOB_UNSIGNED');
      expectFlareCode(() => verifyJob({ ...sign(lead), submitter: 'admin@a.org' }, files(), options()), 'E_POLICY_JOB_UNSIGNED');
      expectFlareCode(() => verifyJob({ ...sign(lead), kind: 'abort' }, files(), options()), 'E_POLICY_JOB_UNSIGNED');
      expectFlareCode(() => verifyJob('a string', files(), options()), 'E_POLICY_JOB_UNSIGNED');
    });

    it('cannot change meta.json (E_POLICY_JOB_TAMPERED, naming the file)', () => {
      const f = files();
      f.set('meta.json', enc('{"name":"spam","min_clients":1,"deploy_map":{"app":["@ALL"]}}'));
      expect(expectFlareCode(() => verifyJob(sign(lead), f, options()), 'E_POLICY_JOB_TAMPERED').message).toBe('job file "meta.json" differs from what the submitter signed');
    });

    it('cannot change the initial model (E_POLICY_JOB_TAMPERED)', () => {
      const f = files();
      const model = f.get('app/model.safetensors')!.slice();
      model[model.length - 1] = 0x40;
      f.set('app/model.safetensors', model);
      expect(expectFlareCode(() => verifyJob(sign(lead), f, options()), 'E_POLICY_JOB_TAMPERED').message).toMatch(/"app\/model.safetensors" differs/);
    });

    it('cannot add, remove or rename a file (E_POLICY_JOB_TAMPERED)', () => {
      const s = sign(lead);
      const added = files();
      added.set('app/custom/evil.py', enc('import os\n'));
      expect(expectFlareCode(() => verifyJob(s, added, options()), 'E_POLICY_JOB_TAMPERED').message).toMatch(/"app\/custom\/evil.py" arrived but was not signed/);
      const removed = files();
      removed.delete('app/config/config_fed_client.json');
      expect(expectFlareCode(() => verifyJob(s, removed, options()), 'E_POLICY_JOB_TAMPERED').message).toMatch(/was signed but did not arrive/);
      const renamed = new Map([...files()].map(([p, b]) => [p === 'meta.json' ? 'meta2.json' : p, b]));
      expectFlareCode(() => verifyJob(s, renamed, options()), 'E_POLICY_JOB_TAMPERED');
    });

    it('cannot rewrite the signed file list to match its changes (E_POLICY_JOB_TAMPERED: the signature breaks)', () => {
      const f = files();
      f.set('meta.json', enc('{"name":"other"}'));
      const s = sign(lead);
      const rewritten = { ...s, files: { ...s.files, 'meta.json': sign(lead, f).files['meta.json']! } };
      expect(expectFlareCode(() => verifyJob(rewritten, f, options()), 'E_POLICY_JOB_TAMPERED').message).toMatch(/signature does not verify/);
    });

    it('cannot deploy a signed job under another job id, or change the signed id (E_POLICY_JOB_BINDING / TAMPERED)', () => {
      const other = '9a1c5e9e-6a54-4c3b-9d3e-000000000000';
      expect(expectFlareCode(() => verifyJob(sign(lead), files(), options({ jobId: other })), 'E_POLICY_JOB_BINDING').message).toMatch(/signed for job "3b241101/);
      expectFlareCode(() => verifyJob({ ...sign(lead), job: other }, files(), options({ jobId: other })), 'E_POLICY_JOB_TAMPERED');
    });

    it('cannot deploy under a malformed job id (E_POLICY_JOB_BINDING, not a TypeError)', () => {
      for (const jobId of ['../x', '', 'a'.repeat(129), 'a b']) expectFlareCode(() => verifyJob(sign(lead), files(), options({ jobId })), 'E_POLICY_JOB_BINDING');
      expectFlareCode(() => verifyAbort(signAbort(key(lead), { projectName: 'hospitals', jobId: JOB }), options({ jobId: '../x' })), 'E_POLICY_JOB_BINDING');
    });

    it('cannot replay a job of another project (E_POLICY_JOB_BINDING)', () => {
      expectFlareCode(() => verifyJob(signJob(key(lead), { projectName: 'banks', jobId: JOB, files: files() }), files(), options()), 'E_POLICY_JOB_BINDING');
    });

    it('cannot change the signing time (E_POLICY_JOB_TAMPERED)', () => {
      expectFlareCode(() => verifyJob({ ...sign(lead), signedAt: '2020-01-01T00:00:00.000Z' }, files(), options()), 'E_POLICY_JOB_TAMPERED');
    });

    it('cannot use a revoked admin, or an admin certificate without a role (E_POLICY_JOB_SIGNER)', () => {
      const serial = new X509Certificate(lead.cert).serialNumber.toUpperCase();
      expect(expectFlareCode(() => verifyJob(sign(lead), files(), options({ verifyCertificate: certificateCheck(root, new Set([serial])) })), 'E_POLICY_JOB_SIGNER').message).toMatch(/E_CERT_REVOKED/);
      expect(expectFlareCode(() => verifyJob(sign(noRole), files(), options()), 'E_POLICY_JOB_SIGNER').message).toMatch(/names no role/);
    });

    it('cannot smuggle an unsafe path through a signed job (E_POLICY_JOB_TAMPERED)', () => {
      const s = sign(lead);
      const evil = { ...s, files: { ...s.files, '../../etc/cron.d/x': 'a'.repeat(64) } };
      const received = files();
      received.set('../../etc/cron.d/x', new Uint8Array());
      expectFlareCode(() => verifyJob(evil, received, options()), 'E_POLICY_JOB_TAMPERED');
    });
  });

  it('refuses to sign with a key that is not the certificate\'s (E_POLICY_JOB_SIGNER), unsafe paths and bad ids', () => {
    expectFlareCode(() => signJob({ certPem: lead.cert, privateKey: member.key }, { projectName: 'hospitals', jobId: JOB, files: files() }), 'E_POLICY_JOB_SIGNER');
    expect(() => signJob(key(lead), { projectName: 'hospitals', jobId: JOB, files: new Map([['/etc/passwd', new Uint8Array()]]) })).toThrow(RangeError);
    expect(() => signJob(key(lead), { projectName: 'hospitals', jobId: JOB, files: new Map() })).toThrow(RangeError);
    expect(() => signJob(key(lead), { projectName: 'hospitals', jobId: '../x', files: files() })).toThrow(TypeError);
  });
});

describe('VerifiedSignatures: one signature check per job per process', () => {
  it('a job met by many sites of one process is checked once; each site still gets the verified job', () => {
    const verified = new VerifiedSignatures();
    const s = sign(lead);
    const first = verifyJob(s, files(), options({ verified }));
    for (let i = 0; i < 5; i++) expect(verifyJob(JSON.parse(JSON.stringify(s)), files(), options({ verified }))).toEqual(first);
    expect(verified.checks).toBe(1);
  });

  it('a different job under the same id (other files, other signing time) is verified again', () => {
    const verified = new VerifiedSignatures();
    verifyJob(sign(lead), files(), options({ verified }));
    const other = files();
    other.set('meta.json', enc('{"name":"other"}'));
    verifyJob(sign(lead, other), other, options({ verified }));
    expect(verified.checks).toBe(2);
  });

  it('never accepts a signature this process did not verify: a changed signature of a cached job (E_POLICY_JOB_TAMPERED)', () => {
    const verified = new VerifiedSignatures();
    const s = sign(lead);
    verifyJob(s, files(), options({ verified }));
    // Another admin's signature over the same manifest, under the cached admin's certificate.
    const forged = { ...s, signature: sign(member).signature };
    expectFlareCode(() => verifyJob(forged, files(), options({ verified })), 'E_POLICY_JOB_TAMPERED');
    expect(verified.checks).toBe(2);
    // A failure is not kept: the forgery fails again.
    expectFlareCode(() => verifyJob(forged, files(), options({ verified })), 'E_POLICY_JOB_TAMPERED');
  });

  it('what depends on the site is checked at every site: the files it received, its trust and CRL, the binding (E_POLICY_JOB_TAMPERED, E_POLICY_JOB_SIGNER, E_POLICY_JOB_BINDING)', () => {
    const verified = new VerifiedSignatures();
    const s = sign(lead);
    verifyJob(s, files(), options({ verified }));
    const changed = files();
    changed.set('app/model.safetensors', new Uint8Array(256));
    expectFlareCode(() => verifyJob(s, changed, options({ verified })), 'E_POLICY_JOB_TAMPERED');
    const serial = new X509Certificate(lead.cert).serialNumber.toUpperCase();
    expect(expectFlareCode(() => verifyJob(s, files(), options({ verified, verifyCertificate: certificateCheck(root, new Set([serial])) })), 'E_POLICY_JOB_SIGNER').message).toMatch(/E_CERT_REVOKED/);
    expectFlareCode(() => verifyJob(s, files(), options({ verified, verifyCertificate: certificateCheck(rogueCa) })), 'E_POLICY_JOB_SIGNER');
    expectFlareCode(() => verifyJob(s, files(), options({ verified, projectName: 'banks' })), 'E_POLICY_JOB_BINDING');
    expect(verified.checks).toBe(1);
  });

  it('keeps the newest entries only', () => {
    const verified = new VerifiedSignatures(1);
    const a = sign(lead);
    const otherFiles = files();
    otherFiles.set('meta.json', enc('{"name":"b"}'));
    const b = sign(lead, otherFiles);
    verifyJob(a, files(), options({ verified }));
    verifyJob(b, otherFiles, options({ verified }));
    verifyJob(a, files(), options({ verified }));
    expect(verified.checks).toBe(3);
    expect(() => new VerifiedSignatures(0)).toThrow(RangeError);
  });
});

describe('signAbort / verifyAbort', () => {
  const abort = (c: TestCert, jobId = JOB) => signAbort(key(c), { projectName: 'hospitals', jobId });

  it('verifies an abort and names its signer from the certificate', () => {
    expect(verifyAbort(abort(projectAdmin), options()).signer).toEqual({ name: 'admin@a.org', org: 'org_a', type: 'admin', role: 'project_admin' });
  });

  it('refuses an unsigned abort (E_POLICY_JOB_UNSIGNED)', () => {
    expectFlareCode(() => verifyAbort(undefined, options()), 'E_POLICY_JOB_UNSIGNED');
    expectFlareCode(() => verifyAbort({ v: 1, kind: 'abort', project: 'hospitals', job: JOB }, options()), 'E_POLICY_JOB_UNSIGNED');
  });

  it('refuses an abort of another job or project (E_POLICY_JOB_BINDING), from the server (E_POLICY_JOB_SIGNER), or altered (E_POLICY_JOB_TAMPERED)', () => {
    expectFlareCode(() => verifyAbort(abort(lead, 'another-job'), options()), 'E_POLICY_JOB_BINDING');
    expectFlareCode(() => verifyAbort(abort(server), options()), 'E_POLICY_JOB_SIGNER');
    expectFlareCode(() => verifyAbort({ ...abort(member), certificate: lead.cert }, options()), 'E_POLICY_JOB_TAMPERED');
  });

  it('a job signature is not an abort, and an abort is not a job (domain separation)', () => {
    const j = sign(lead);
    const asAbort = { v: 1, kind: 'abort', project: j.project, job: j.job, signedAt: j.signedAt, certificate: j.certificate, signature: j.signature };
    expectFlareCode(() => verifyAbort(asAbort, options()), 'E_POLICY_JOB_TAMPERED');
  });
});

describe('checkJobFreshness', () => {
  const now = new Date('2026-12-05T06:00:00.000Z');
  const day = 24 * 3600_000;

  it('accepts a job signed within the window, and a signing time slightly ahead of the clock', () => {
    expect(() => checkJobFreshness('2026-12-04T06:00:00.000Z', { maxAgeMs: 7 * day, now })).not.toThrow();
    expect(() => checkJobFreshness('2026-12-05T06:04:00.000Z', { maxAgeMs: 7 * day, now })).not.toThrow();
  });

  it('refuses a job first seen longer after its signing than the window (E_POLICY_JOB_EXPIRED), naming the job', () => {
    const e = expectFlareCode(() => checkJobFreshness('2026-11-27T06:00:00.000Z', { maxAgeMs: 7 * day, now, job: JOB }), 'E_POLICY_JOB_EXPIRED');
    expect(e.message).toContain(JOB);
    expect(e.message).toContain('2026-11-27T06:00:00.000Z');
  });

  it('refuses a signing time further in the future than the clock skew allowed, and an unreadable one (E_POLICY_JOB_EXPIRED)', () => {
    expectFlareCode(() => checkJobFreshness('2026-12-05T07:00:00.000Z', { maxAgeMs: 7 * day, now }), 'E_POLICY_JOB_EXPIRED');
    expectFlareCode(() => checkJobFreshness('2026-12-05T06:01:00.000Z', { maxAgeMs: 7 * day, maxSkewMs: 0, now }), 'E_POLICY_JOB_EXPIRED');
    expectFlareCode(() => checkJobFreshness('yesterday', { maxAgeMs: 7 * day, now }), 'E_POLICY_JOB_EXPIRED');
  });

  it('refuses a window that is not a positive number (TypeError)', () => {
    expect(() => checkJobFreshness('2026-12-04T06:00:00.000Z', { maxAgeMs: 0, now })).toThrow(TypeError);
    expect(() => checkJobFreshness('2026-12-04T06:00:00.000Z', { maxAgeMs: Number.NaN, now })).toThrow(TypeError);
  });

  it('the signing time is the one the signature covers: verifyJob returns it', () => {
    const s = signJob(key(lead), { projectName: 'hospitals', jobId: JOB, files: files(), now });
    expect(verifyJob(s, files(), options()).signedAt).toBe(now.toISOString());
  });
});
