import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { createCrl, createRootCa, issueCertificate, verifyCertificate, type RootCa } from '@flare/pki';
import { beforeAll, describe, expect, it } from 'vitest';
import { admitJob, parseAuthorizationPolicy, parseComponentPolicy, signAbort, signJob, verifyAbort, verifyJob, type SignerCertificateCheck } from '@flare/policy';

// @flare/policy's job signatures with @flare/pki's real certificate check, as a site composes them: certificates
// issued by a project root in pki's subject layout, verification against the root and its CRL.

let root: RootCa;
let otherRoot: RootCa;
const kits = new Map<string, { certPem: string; privateKey: KeyObject; serial: string }>();
const issue = async (ca: RootCa, name: string, org: string, type: 'admin' | 'server' | 'client', role?: string) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer: ca, subject: { name, org, type, ...(role === undefined ? {} : { role }) }, publicKey });
  return { certPem, privateKey, serial: new X509Certificate(certPem).serialNumber.toLowerCase().replace(/^0+/, '') };
};

beforeAll(async () => {
  root = await createRootCa({ commonName: 'hospitals' });
  otherRoot = await createRootCa({ commonName: 'hospitals' });
  kits.set('lead', await issue(root, 'lead@a.org', 'org_a', 'admin', 'lead'));
  kits.set('member', await issue(root, 'member@a.org', 'org_a', 'admin', 'member'));
  kits.set('server', await issue(root, 'server1', 'org_a', 'server'));
  kits.set('site', await issue(root, 'site-1', 'org_a', 'client'));
  kits.set('impostor', await issue(otherRoot, 'admin@a.org', 'org_a', 'admin', 'project_admin'));
}, 60_000);

const JOB = '6f1c1f4e-1a3b-4a8e-9c55-2f6d1d1b0c77';
const files = () => new Map([['meta.json', new TextEncoder().encode('{"name":"job"}')], ['app/model.safetensors', new Uint8Array(64).fill(3)]]);
const pkiCheck = (crl?: string): SignerCertificateCheck => (pem) => verifyCertificate(pem, { rootCaPem: root.certPem, ...(crl === undefined ? {} : { crl }), expectedType: 'admin' });
const opts = (crl?: string) => ({ projectName: 'hospitals', jobId: JOB, verifyCertificate: pkiCheck(crl) });

describe('job signatures with @flare/pki certificates', () => {
  it("a site verifies a job signed with an admin kit; pki's verifyCertificate result is the signer check as it is", () => {
    const v = verifyJob(signJob(kits.get('lead')!, { projectName: 'hospitals', jobId: JOB, files: files() }), files(), opts());
    expect(v.submitter).toEqual({ name: 'lead@a.org', org: 'org_a', type: 'admin', role: 'lead' });
  });

  it('refuses a job signed by the server or a site (pki: E_CERT_WRONG_TYPE) and by an admin of another root (E_CERT_UNTRUSTED)', () => {
    for (const [who, code] of [['server', 'E_CERT_WRONG_TYPE'], ['site', 'E_CERT_WRONG_TYPE'], ['impostor', 'E_CERT_UNTRUSTED']] as const) {
      const s = signJob(kits.get(who)!, { projectName: 'hospitals', jobId: JOB, files: files() });
      expect(() => verifyJob(s, files(), opts())).toThrow(expect.objectContaining({ code: 'E_POLICY_JOB_SIGNER', message: expect.stringContaining(code) as string }));
    }
  });

  it('refuses jobs and aborts of a revoked admin once the CRL names them (E_POLICY_JOB_SIGNER from E_CERT_REVOKED)', async () => {
    const lead = kits.get('lead')!;
    const crl = await createCrl({ issuer: root, entries: [{ serial: lead.serial, date: new Date() }], crlNumber: 2 });
    const job = signJob(lead, { projectName: 'hospitals', jobId: JOB, files: files() });
    expect(() => verifyJob(job, files(), opts(crl))).toThrow(expect.objectContaining({ code: 'E_POLICY_JOB_SIGNER', message: expect.stringContaining('E_CERT_REVOKED') as string }));
    expect(() => verifyAbort(signAbort(lead, { projectName: 'hospitals', jobId: JOB }), opts(crl))).toThrow(expect.objectContaining({ code: 'E_POLICY_JOB_SIGNER' }));
    // Anyone else still verifies under the same CRL.
    expect(verifyAbort(signAbort(kits.get('member')!, { projectName: 'hospitals', jobId: JOB }), opts(crl)).signer.role).toBe('member');
  });

  it("the site's authorization decides on the certificate's role: a member's signed job is refused (E_POLICY_DENIED)", () => {
    const policy = {
      authorization: parseAuthorizationPolicy({ format_version: '1.0', permissions: { lead: { submit_job: 'any' }, member: { view: 'any' } } }),
      components: parseComponentPolicy({ allow: ['fedavg'], byoc: false }),
      siteOrg: 'org_a',
      projectName: 'hospitals',
      verifyCertificate: pkiCheck(),
    };
    const sign = (who: string) => signJob(kits.get(who)!, { projectName: 'hospitals', jobId: JOB, files: files() });
    expect(admitJob({ jobId: JOB, files: files(), signature: sign('lead'), components: ['fedavg'] }, policy).submitter.role).toBe('lead');
    expect(() => admitJob({ jobId: JOB, files: files(), signature: sign('member'), components: ['fedavg'] }, policy)).toThrow(expect.objectContaining({ code: 'E_POLICY_DENIED' }));
  });
});
