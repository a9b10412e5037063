import { generateKeyPairSync, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCrl, createRootCa, issueCertificate, loadCrl, verifyCertificate, type RootCa } from '../src/index.js';
import { identityOf } from '../src/identity.js';
import { toSigningCryptoKey, webAlgorithm } from '../src/keys.js';
import { x509 } from '../src/x509.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { run, tempDir } from './helpers.js';

const now = new Date('2026-03-01T00:00:00Z');
const day = 86_400_000;
const key = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;

describe('verifyCertificate', () => {
  let root: RootCa;
  let other: RootCa;
  let client: string;
  let server: string;
  let admin: string;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'proj', now });
    other = await createRootCa({ commonName: 'proj', now });
    client = await issueCertificate({ issuer: root, subject: { name: 'site-1', org: 'org_a', type: 'client' }, publicKey: key(), validDays: 30, now });
    server = await issueCertificate({ issuer: root, subject: { name: 'server1', org: 'org_a', type: 'server' }, publicKey: key(), now });
    admin = await issueCertificate({ issuer: root, subject: { name: 'a@b.com', org: 'org_a', type: 'admin', role: 'lead' }, publicKey: key(), now });
  });

  it('returns name, org, type, role, notAfter and the SHA-256 fingerprint of a good certificate', () => {
    const v = verifyCertificate(admin, { rootCaPem: root.certPem, at: now, expectedName: 'a@b.com', expectedType: 'admin' });
    expect(v).toMatchObject({ name: 'a@b.com', org: 'org_a', type: 'admin', role: 'lead' });
    expect(v.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(v.notAfter).toBeInstanceOf(Date);
  });
  it('refuses a certificate of another root with the same name (E_CERT_UNTRUSTED)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: other.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('refuses a certificate whose signature was altered (E_CERT_UNTRUSTED)', async () => {
    const der = Buffer.from(client.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5]! ^= 0x01;
    await expectFlareCodeAsync(() => verifyCertificate(der, { rootCaPem: root.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('refuses the root presented as a participant (E_CERT_UNTRUSTED)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(root.certPem, { rootCaPem: root.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('detects an expired certificate with an injected clock (E_CERT_EXPIRED)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() + 31 * day) }), 'E_CERT_EXPIRED');
  });
  it('detects a not-yet-valid certificate (E_CERT_NOT_YET_VALID)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() - 2 * 3_600_000) }), 'E_CERT_NOT_YET_VALID');
  });
  it('accepts a certificate one hour before issue (notBefore is backdated for clock skew)', () => {
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() - 3_000_000) }).name).toBe('site-1');
  });
  it('detects a revoked certificate (E_CERT_REVOKED)', async () => {
    const serial = verifyCertificate(client, { rootCaPem: root.certPem, at: now }).serial;
    const crl = await createCrl({ issuer: root, entries: [{ serial, date: now }], crlNumber: 1, now });
    const e = await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, crl, at: now }), 'E_CERT_REVOKED');
    expect(e.message).toContain(serial);
    expect(verifyCertificate(server, { rootCaPem: root.certPem, crl, at: now }).name).toBe('server1');
  });
  it('refuses a CRL signed by another root (E_CRL_INVALID)', async () => {
    const crl = await createCrl({ issuer: other, entries: [], crlNumber: 1, now });
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, crl, at: now }), 'E_CRL_INVALID');
  });
  it('refuses a client certificate presented as a server (E_CERT_WRONG_TYPE)', async () => {
    const e = await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedType: 'server' }), 'E_CERT_WRONG_TYPE');
    expect(e.message).toContain('client certificate where a server certificate is required');
  });
  it('refuses an admin certificate presented as a client (E_CERT_WRONG_TYPE)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(admin, { rootCaPem: root.certPem, at: now, expectedType: 'client' }), 'E_CERT_WRONG_TYPE');
  });
  it('refuses a name mismatch (E_CERT_NAME_MISMATCH)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedName: 'site-2' }), 'E_CERT_NAME_MISMATCH');
  });
  it('refuses garbage (E_CERT_MALFORMED)', async () => {
    await expectFlareCodeAsync(() => verifyCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', { rootCaPem: root.certPem }), 'E_CERT_MALFORMED');
  });
  it('detects an expired root (E_CERT_EXPIRED)', async () => {
    const shortRoot = await createRootCa({ commonName: 'short', now, validDays: 2 });
    const leaf = await issueCertificate({ issuer: shortRoot, subject: { name: 's', org: 'o', type: 'client' }, publicKey: key(), now });
    const e = await expectFlareCodeAsync(() => verifyCertificate(leaf, { rootCaPem: shortRoot.certPem, at: new Date(now.getTime() + 3 * day) }), 'E_CERT_EXPIRED');
    expect(e.message).toContain('root CA');
  });
});

describe('verifyCertificate reads certificates the way @peculiar/x509 and OpenSSL do', () => {
  let root: RootCa;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'proj', now });
  });

  /** A leaf signed by `root` with a hand-made subject (any string types) and extensions, via @peculiar/x509. */
  async function leafWith(subject: x509.JsonName, extensions: x509.Extension[], notAfter = new Date(now.getTime() + 30 * day)): Promise<string> {
    const rootCert = new x509.X509Certificate(root.certPem);
    const spki = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'der' });
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: '0badc0ffee',
      subject,
      issuer: rootCert.subjectName,
      notBefore: new Date(now.getTime() - day),
      notAfter,
      publicKey: spki,
      signingKey: await toSigningCryptoKey(root.privateKey),
      signingAlgorithm: webAlgorithm('ecdsa-p256').signing,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(rootCert, false, webcrypto),
        ...extensions,
      ],
    });
    return cert.toString('pem');
  }
  const clientEku = () => new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false);

  it('property: identity, dates and serial equal @peculiar/x509\'s reading for every string type of the subject', async () => {
    // Values in the object form @peculiar/x509's Name accepts for each string type, plus a raw NumericString
    // (no DirectoryString choice: @peculiar/x509 reads it as the hex of its encoding, and so must we).
    const kinds = ['utf8String', 'printableString', 'ia5String', 'bmpString', 'universalString'] as const;
    const kind = fc.constantFrom(...kinds);
    const printable = fc.stringMatching(/^[A-Za-z0-9 '()+,./:=?-]{1,20}$/);
    const value: fc.Arbitrary<string | Record<string, string>> = fc.oneof(
      fc.tuple(kind, printable).map(([k, v]) => ({ [k]: v })),
      fc.tuple(fc.constantFrom('utf8String', 'ia5String'), fc.string({ minLength: 1, maxLength: 20, unit: 'binary-ascii' })).map(([k, v]) => ({ [k]: v })),
      fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).map((v) => ({ utf8String: v })),
      fc.constant('#1203313233'),
    );
    const type = fc.constantFrom('server', 'client', 'admin', 'relay', 'nonsense');
    await fc.assert(
      fc.asyncProperty(value, value, type, fc.option(value, { nil: undefined }), fc.boolean(), async (cn, o, ou, role, duplicateO) => {
        const subject: Array<Record<string, Array<string | Record<string, string>>>> = [{ '2.5.4.3': [cn] }, { '2.5.4.10': duplicateO ? [o, o] : [o] }, { '2.5.4.11': [{ printableString: ou }] }];
        if (role !== undefined) subject.push({ '1.2.840.113549.1.9.2': [role] });
        // Name takes typed values at run time; its JSON type only spells plain strings.
        const pem = await leafWith(subject as unknown as x509.JsonName, [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth], false)]);
        const reference = new x509.X509Certificate(pem);
        let expected: unknown;
        try {
          expected = { ...identityOf(reference.subjectName), notBefore: reference.notBefore, notAfter: reference.notAfter, serial: 'badc0ffee' };
        } catch (e) {
          expected = (e as { code: string }).code;
        }
        let actual: unknown;
        try {
          const v = verifyCertificate(pem, { rootCaPem: root.certPem, at: now });
          actual = { name: v.name, org: v.org, type: v.type, ...(v.role === undefined ? {} : { role: v.role }), notBefore: v.notBefore, notAfter: v.notAfter, serial: v.serial };
        } catch (e) {
          actual = (e as { code: string }).code;
        }
        expect(actual).toEqual(expected);
      }),
      { numRuns: 60, seed: 20260301 },
    );
  });

  it('OpenSSL interop: PrintableString, BMPString, IA5String names and a GeneralizedTime notAfter (openssl x509 -req)', async () => {
    const dir = await tempDir();
    const f = (n: string) => join(dir, n);
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-subj', '/CN=ossl', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await writeFile(f('req.cnf'), '[req]\ndistinguished_name=dn\nstring_mask=default\nprompt=no\n[dn]\nCN=x\n');
    await writeFile(f('ext.cnf'), 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
    await run('openssl', ['req', '-new', '-config', f('req.cnf'), '-utf8', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('leaf.key'), '-out', f('leaf.csr'),
      '-subj', '/CN=site-9/O=org\u0101b/OU=admin/unstructuredName=le_ad']);
    // 10,000 days: notAfter lies past 2049, so RFC 5280 4.1.2.5 requires a GeneralizedTime.
    await run('openssl', ['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-out', f('leaf.pem'), '-days', '10000', '-extfile', f('ext.cnf')]);
    const [caPem, leafPem] = await Promise.all([readFile(f('ca.pem'), 'utf8'), readFile(f('leaf.pem'), 'utf8')]);
    const asn1 = (await run('openssl', ['asn1parse', '-in', f('leaf.pem')])).stdout;
    expect(asn1).toMatch(/PRINTABLESTRING\s+:site-9[\s\S]*BMPSTRING[\s\S]*IA5STRING\s+:le_ad/);
    expect(asn1).toContain('GENERALIZEDTIME');
    const v = verifyCertificate(leafPem, { rootCaPem: caPem, expectedName: 'site-9', expectedType: 'admin' });
    expect(v).toMatchObject({ name: 'site-9', org: 'org\u0101b', type: 'admin', role: 'le_ad' });
    const node = new NodeX509(leafPem);
    expect(v.notBefore).toEqual(new Date(node.validFrom));
    expect(v.notAfter).toEqual(new Date(node.validTo));
    expect(v.notAfter.getUTCFullYear()).toBeGreaterThan(2050);
    expect(v.fingerprint).toBe(node.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(v.serial).toBe(node.serialNumber.toLowerCase().replace(/^0+/, ''));
    expect(v.publicKey.equals(node.publicKey)).toBe(true);
  });

  it('refuses a certificate with the same extension twice (RFC 5280 4.2) (E_CERT_MALFORMED)', async () => {
    const pem = await leafWith([{ CN: ['dup'] }, { O: ['o'] }, { OU: ['client'] }], [clientEku(), clientEku()]);
    await expectFlareCodeAsync(() => verifyCertificate(pem, { rootCaPem: root.certPem, at: now }), 'E_CERT_MALFORMED');
  });
  it('refuses a leaf without an extended key usage (E_CERT_WRONG_TYPE)', async () => {
    const pem = await leafWith([{ CN: ['bare'] }, { O: ['o'] }, { OU: ['client'] }], []);
    await expectFlareCodeAsync(() => verifyCertificate(pem, { rootCaPem: root.certPem, at: now }), 'E_CERT_WRONG_TYPE');
  });
  it('refuses a subject with two common names, every time it is presented (E_CERT_MALFORMED)', async () => {
    const pem = await leafWith([{ CN: ['a', 'b'] }, { O: ['o'] }, { OU: ['client'] }], [clientEku()]);
    for (let i = 0; i < 2; i++) await expectFlareCodeAsync(() => verifyCertificate(pem, { rootCaPem: root.certPem, at: now }), 'E_CERT_MALFORMED');
  });
});

describe('verifyCertificate remembers parsing, never a verdict', () => {
  let root: RootCa;
  let other: RootCa;
  let client: string;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'proj', now });
    other = await createRootCa({ commonName: 'proj', now });
    client = await issueCertificate({ issuer: root, subject: { name: 'site-1', org: 'org_a', type: 'client' }, publicKey: key(), validDays: 30, now });
  });

  it('a certificate accepted once is refused later when it has expired (E_CERT_EXPIRED)', async () => {
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now }).name).toBe('site-1');
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() + 31 * day) }), 'E_CERT_EXPIRED');
  });
  it('a certificate accepted once is refused once a CRL revokes it (E_CERT_REVOKED)', async () => {
    const v = verifyCertificate(client, { rootCaPem: root.certPem, at: now });
    const crl = await createCrl({ issuer: root, entries: [{ serial: v.serial, date: now }], crlNumber: 2, now });
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, crl, at: now }), 'E_CERT_REVOKED');
  });
  it('a certificate accepted under its root is refused under another root with the same name, and back (E_CERT_UNTRUSTED)', async () => {
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now }).name).toBe('site-1');
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: other.certPem, at: now }), 'E_CERT_UNTRUSTED');
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now }).name).toBe('site-1');
  });
  it('a certificate accepted once is refused for another expected name or type (E_CERT_NAME_MISMATCH, E_CERT_WRONG_TYPE)', async () => {
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedName: 'site-1', expectedType: 'client' }).name).toBe('site-1');
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedName: 'site-2' }), 'E_CERT_NAME_MISMATCH');
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedType: 'server' }), 'E_CERT_WRONG_TYPE');
  });
  it('the same bytes as PEM or DER give the same answer; a CRL of another root is refused for a cached leaf (E_CRL_INVALID)', async () => {
    const der = new NodeX509(client).raw;
    expect(verifyCertificate(der, { rootCaPem: root.certPem, at: now })).toEqual(verifyCertificate(client, { rootCaPem: root.certPem, at: now }));
    const foreign = await createCrl({ issuer: await createRootCa({ commonName: 'elsewhere', now }), entries: [], crlNumber: 1, now });
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, crl: foreign }), 'E_CRL_INVALID');
  });
  it('re-checks a CRL object that was verified against another root with the same name (E_CRL_INVALID)', async () => {
    const serial = verifyCertificate(client, { rootCaPem: root.certPem, at: now }).serial;
    // 'other' has the same CN as 'root': its CRL names the same issuer and may list any serial.
    const foreign = loadCrl(await createCrl({ issuer: other, entries: [{ serial, date: now }], crlNumber: 1, now }), { rootCaPem: other.certPem });
    expect(foreign.verified).toBe(true);
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, crl: foreign }), 'E_CRL_INVALID');
    // A hand-built object claiming to be verified is checked too.
    await expectFlareCodeAsync(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, crl: { ...foreign } }), 'E_CRL_INVALID');
    const own = loadCrl(await createCrl({ issuer: root, entries: [], crlNumber: 3, now }), { rootCaPem: root.certPem });
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now, crl: own }).name).toBe('site-1');
  });
  it('returns fresh Date objects: a caller changing one does not change the next answer', () => {
    const a = verifyCertificate(client, { rootCaPem: root.certPem, at: now });
    a.notAfter.setTime(0);
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: now }).notAfter.getTime()).toBeGreaterThan(now.getTime());
  });
});
