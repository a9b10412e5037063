import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCrl, createRootCa, issueCertificate, verifyCertificate, type RootCa } from '../src/index.js';
import { expectCode } from './helpers.js';

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
    await expectCode(() => verifyCertificate(client, { rootCaPem: other.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('refuses a certificate whose signature was altered (E_CERT_UNTRUSTED)', async () => {
    const der = Buffer.from(client.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5]! ^= 0x01;
    await expectCode(() => verifyCertificate(der, { rootCaPem: root.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('refuses the root presented as a participant (E_CERT_UNTRUSTED)', async () => {
    await expectCode(() => verifyCertificate(root.certPem, { rootCaPem: root.certPem, at: now }), 'E_CERT_UNTRUSTED');
  });
  it('detects an expired certificate with an injected clock (E_CERT_EXPIRED)', async () => {
    await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() + 31 * day) }), 'E_CERT_EXPIRED');
  });
  it('detects a not-yet-valid certificate (E_CERT_NOT_YET_VALID)', async () => {
    await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() - 2 * 3_600_000) }), 'E_CERT_NOT_YET_VALID');
  });
  it('accepts a certificate one hour before issue (notBefore is backdated for clock skew)', () => {
    expect(verifyCertificate(client, { rootCaPem: root.certPem, at: new Date(now.getTime() - 3_000_000) }).name).toBe('site-1');
  });
  it('detects a revoked certificate (E_CERT_REVOKED)', async () => {
    const serial = verifyCertificate(client, { rootCaPem: root.certPem, at: now }).serial;
    const crl = await createCrl({ issuer: root, entries: [{ serial, date: now }], crlNumber: 1, now });
    const e = await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, crl, at: now }), 'E_CERT_REVOKED');
    expect(e.message).toContain(serial);
    expect(verifyCertificate(server, { rootCaPem: root.certPem, crl, at: now }).name).toBe('server1');
  });
  it('refuses a CRL signed by another root (E_CRL_INVALID)', async () => {
    const crl = await createCrl({ issuer: other, entries: [], crlNumber: 1, now });
    await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, crl, at: now }), 'E_CRL_INVALID');
  });
  it('refuses a client certificate presented as a server (E_CERT_WRONG_TYPE)', async () => {
    const e = await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedType: 'server' }), 'E_CERT_WRONG_TYPE');
    expect(e.message).toContain('client certificate where a server certificate is required');
  });
  it('refuses an admin certificate presented as a client (E_CERT_WRONG_TYPE)', async () => {
    await expectCode(() => verifyCertificate(admin, { rootCaPem: root.certPem, at: now, expectedType: 'client' }), 'E_CERT_WRONG_TYPE');
  });
  it('refuses a name mismatch (E_CERT_NAME_MISMATCH)', async () => {
    await expectCode(() => verifyCertificate(client, { rootCaPem: root.certPem, at: now, expectedName: 'site-2' }), 'E_CERT_NAME_MISMATCH');
  });
  it('refuses garbage (E_CERT_MALFORMED)', async () => {
    await expectCode(() => verifyCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', { rootCaPem: root.certPem }), 'E_CERT_MALFORMED');
  });
  it('detects an expired root (E_CERT_EXPIRED)', async () => {
    const shortRoot = await createRootCa({ commonName: 'short', now, validDays: 2 });
    const leaf = await issueCertificate({ issuer: shortRoot, subject: { name: 's', org: 'o', type: 'client' }, publicKey: key(), now });
    const e = await expectCode(() => verifyCertificate(leaf, { rootCaPem: shortRoot.certPem, at: new Date(now.getTime() + 3 * day) }), 'E_CERT_EXPIRED');
    expect(e.message).toContain('root CA');
  });
});
