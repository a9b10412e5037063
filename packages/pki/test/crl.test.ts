import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCrl, createRootCa, isRevoked, issueCertificate, loadCrl, verifyCertificate, type RootCa } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { run, tempDir } from './helpers.js';

const now = new Date('2026-05-01T00:00:00Z');
const key = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;

describe.each(['ecdsa-p256', 'rsa-2048'] as const)('CRL (%s root)', (keyType) => {
  let root: RootCa;
  let revoked: string;
  let good: string;
  let crlPem: string;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'proj', keyType, now });
    revoked = await issueCertificate({ issuer: root, subject: { name: 'site-1', org: 'o', type: 'client' }, publicKey: key(), now });
    good = await issueCertificate({ issuer: root, subject: { name: 'site-2', org: 'o', type: 'client' }, publicKey: key(), now });
    const serial = verifyCertificate(revoked, { rootCaPem: root.certPem, at: now }).serial;
    crlPem = await createCrl({ issuer: root, entries: [{ serial, date: now, reason: 1 }], crlNumber: 7, now });
  });

  it('openssl crl -verify accepts the CRL and shows the entry and CRL number', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'crl.pem'), crlPem);
    await writeFile(join(dir, 'root.pem'), root.certPem);
    const { stdout, stderr } = await run('openssl', ['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'root.pem'), '-noout', '-text']);
    expect(stderr + stdout).toContain('verify OK');
    expect(stdout).toContain('Key Compromise');
    expect(stdout).toMatch(/X509v3 CRL Number:\s+7/);
  });
  it('openssl verify -crl_check refuses the revoked leaf and accepts the other', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'chain.pem'), root.certPem + crlPem);
    await writeFile(join(dir, 'revoked.pem'), revoked);
    await writeFile(join(dir, 'good.pem'), good);
    const at = String(now.getTime() / 1000 + 60);
    const refused = await run('openssl', ['verify', '-crl_check', '-attime', at, '-CAfile', join(dir, 'chain.pem'), join(dir, 'revoked.pem')]).then(
      () => undefined,
      (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
    );
    expect(refused).toContain('certificate revoked');
    const ok = await run('openssl', ['verify', '-crl_check', '-attime', at, '-CAfile', join(dir, 'chain.pem'), join(dir, 'good.pem')]);
    expect(ok.stdout).toContain(': OK');
  });
  it('loadCrl reads PEM and DER and checks the signature against the root; isRevoked finds the serial', () => {
    const crl = loadCrl(crlPem, { rootCaPem: root.certPem });
    expect(crl.verified).toBe(true);
    expect(crl.revoked.size).toBe(1);
    expect(isRevoked(revoked, crl)).toBe(true);
    expect(isRevoked(good, crl)).toBe(false);
    const der = Buffer.from(crlPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(isRevoked(revoked, loadCrl(der))).toBe(true);
    expect(loadCrl(der).verified).toBe(false);
  });
  it('refuses a CRL whose bytes were altered (E_CRL_INVALID)', async () => {
    const der = Buffer.from(crlPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[20]! ^= 0x01; // inside the signed TBS: the signature no longer matches
    await expectFlareCodeAsync(() => loadCrl(der, { rootCaPem: root.certPem }), 'E_CRL_INVALID');
  });
  it('refuses a CRL of another CA for this root, and for a certificate it did not issue (E_CRL_INVALID)', async () => {
    const other = await createRootCa({ commonName: 'other', keyType, now });
    const foreign = await createCrl({ issuer: other, entries: [], crlNumber: 1, now });
    await expectFlareCodeAsync(() => loadCrl(foreign, { rootCaPem: root.certPem }), 'E_CRL_INVALID');
    await expectFlareCodeAsync(() => isRevoked(good, foreign), 'E_CRL_INVALID');
    await expectFlareCodeAsync(() => loadCrl('not a crl'), 'E_CRL_INVALID');
  });
});
