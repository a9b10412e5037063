import { expectFlareCode } from '@flare/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byocManifest, signByoc, verifyByocSignature, type ByocBundle } from '../src/index.js';
import { issue, makeCa, scratch, type TestCert } from './helpers.js';

// Certificates made by the real openssl CLI: a project root CA, the submitter's admin certificate, and
// certificates that must be refused (another person, another org, another CA, a server certificate, a CA).
const tmp = scratch();
let root: TestCert, alice: TestCert, aliceRsa: TestCert, aliceEd: TestCert, bob: TestCert, otherOrg: TestCert, rogueCa: TestCert, rogue: TestCert, server: TestCert, subCa: TestCert;
beforeAll(() => {
  root = makeCa(tmp.dir, 'project');
  alice = issue(tmp.dir, root, 'alice', { cn: 'alice@a.org', o: 'org_a' });
  aliceRsa = issue(tmp.dir, root, 'alice-rsa', { cn: 'alice@a.org', o: 'org_a', kind: 'rsa' });
  aliceEd = issue(tmp.dir, root, 'alice-ed', { cn: 'alice@a.org', o: 'org_a', kind: 'ed25519' });
  bob = issue(tmp.dir, root, 'bob', { cn: 'bob@a.org', o: 'org_a' });
  otherOrg = issue(tmp.dir, root, 'alice-b', { cn: 'alice@a.org', o: 'org_b' });
  rogueCa = makeCa(tmp.dir, 'rogue');
  rogue = issue(tmp.dir, rogueCa, 'alice-rogue', { cn: 'alice@a.org', o: 'org_a' });
  server = issue(tmp.dir, root, 'server', { cn: 'alice@a.org', o: 'org_a', ext: ['basicConstraints=critical,CA:FALSE', 'extendedKeyUsage=serverAuth'] });
  subCa = issue(tmp.dir, root, 'sub', { cn: 'alice@a.org', o: 'org_a', ext: ['basicConstraints=critical,CA:TRUE'] });
});
afterAll(() => tmp.cleanup());

const files = new Map([
  ['meta.json', new TextEncoder().encode('{"name": "job1"}')],
  ['app/custom/learner.py', new TextEncoder().encode('print("train")\n')],
]);
const submitter = { name: 'alice@a.org', org: 'org_a', role: 'lead' };
const bundle = (signer: TestCert, cert = signer, f = files): ByocBundle => ({ files: f, signature: signByoc(f, signer.key), certificate: cert.cert });
const check = (b: ByocBundle, opts: Partial<Parameters<typeof verifyByocSignature>[1]> = {}) => verifyByocSignature(b, { submitter, rootCa: root.cert, ...opts });

describe('BYOC signatures', () => {
  it('accepts code signed by the submitter\'s admin certificate (ECDSA P-256, RSA-PSS, Ed25519)', () => {
    for (const c of [alice, aliceRsa, aliceEd]) expect(() => check(bundle(c))).not.toThrow();
  });

  it('the manifest covers every path and content, independent of map order', () => {
    const reversed = new Map([...files].reverse());
    expect(byocManifest(reversed)).toEqual(byocManifest(files));
    const text = new TextDecoder().decode(byocManifest(files));
    expect(text.startsWith('flare-ts byoc manifest v1\n{"files":{"app/custom/learner.py":"')).toBe(true);
  });

  const refusals: Array<[string, () => void, RegExp]> = [
    ['a file changed after signing', () => check({ ...bundle(alice), files: new Map([...files, ['meta.json', new TextEncoder().encode('{"name": "job2"}')]]) }), /does not match its files/],
    ['a file added after signing', () => check({ ...bundle(alice), files: new Map([...files, ['evil.py', new Uint8Array([1])]]) }), /does not match/],
    ['a file renamed after signing', () => check({ ...bundle(alice), files: new Map([...files].map(([p, b]) => [p === 'meta.json' ? 'meta2.json' : p, b])) }), /does not match/],
    ['a signature by another key under the submitter\'s certificate', () => check(bundle(bob, alice)), /does not match/],
    ['a certificate of another person', () => check(bundle(bob)), /signed by "bob@a.org", not by its submitter "alice@a.org"/],
    ['a certificate of the same name in another org', () => check(bundle(otherOrg)), /of org "org_b"/],
    ['a certificate from another CA', () => check(bundle(rogue)), /not issued by this project's root CA/],
    ['a server (not client) certificate', () => check(bundle(server)), /not a client/],
    ['a CA certificate', () => check(bundle(subCa)), /is a CA certificate/],
    ['an expired certificate', () => check(bundle(alice), { now: new Date('2100-01-01T00:00:00Z') }), /not valid now/],
    ['a revoked certificate', () => check(bundle(alice), { isRevoked: () => true }), /is revoked/],
    ['a garbage certificate', () => check({ ...bundle(alice), certificate: 'not a cert' }), /not a PEM X.509/],
    ['an empty signature', () => check({ ...bundle(alice), signature: '' }), /does not match/],
    ['a path escaping the job folder', () => check(bundle(alice, alice, new Map([['../etc/passwd', new Uint8Array([1])]]))), /not a safe relative path/],
    ['an absolute path', () => check(bundle(alice, alice, new Map([['/etc/passwd', new Uint8Array([1])]]))), /not a safe relative path/],
    ['an empty job', () => byocManifest(new Map()), /between 1 and/],
  ];
  for (const [title, run, message] of refusals) {
    it(`refuses ${title} (E_POLICY_BYOC_SIGNATURE)`, () => {
      expect(expectFlareCode(run, 'E_POLICY_BYOC_SIGNATURE').message).toMatch(message);
    });
  }
});
