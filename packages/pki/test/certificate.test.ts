import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, issueCertificate, verifyCertificate, type RootCa } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { run, tempDir } from './helpers.js';

const now = new Date('2026-01-15T12:00:00Z');

describe.each(['ecdsa-p256', 'rsa-2048'] as const)('createRootCa / issueCertificate (%s)', (keyType) => {
  let root: RootCa;
  let dir: string;
  beforeAll(async () => {
    root = await createRootCa({ commonName: 'example_project', keyType, now, validDays: 400 });
    dir = await tempDir();
    await writeFile(join(dir, 'rootCA.pem'), root.certPem);
  });
  const leafKey = () => (keyType === 'rsa-2048' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'prime256v1' }));

  it('root: CN = project, CA:true critical, keyCertSign + cRLSign (openssl x509 -text)', async () => {
    const { stdout } = await run('openssl', ['x509', '-in', join(dir, 'rootCA.pem'), '-noout', '-text']);
    expect(stdout).toContain('Subject: CN = example_project');
    expect(stdout).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(stdout).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    expect(stdout).toContain(keyType === 'rsa-2048' ? 'sha256WithRSAEncryption' : 'ecdsa-with-SHA256');
  });

  it('server: SAN with IP and DNS entries, serverAuth + clientAuth, CA:false; openssl verify accepts it', async () => {
    const { publicKey } = leafKey();
    const pem = await issueCertificate({ issuer: root, subject: { name: 'server1', org: 'nvidia', type: 'server' }, publicKey, hosts: ['server1', '10.0.0.5', 'fl.example.com', '::1'], now });
    await writeFile(join(dir, 'server.crt'), pem);
    const verified = await run('openssl', ['verify', '-CAfile', join(dir, 'rootCA.pem'), '-attime', String(now.getTime() / 1000), join(dir, 'server.crt')]);
    expect(verified.stdout).toContain(': OK');
    const { stdout } = await run('openssl', ['x509', '-in', join(dir, 'server.crt'), '-noout', '-text']);
    expect(stdout).toContain('Subject: CN = server1, O = nvidia, OU = server');
    expect(stdout).toMatch(/Subject Alternative Name:\s+DNS:server1, IP Address:10\.0\.0\.5, DNS:fl\.example\.com, IP Address:0:0:0:0:0:0:0:1/);
    expect(stdout).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(stdout).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(stdout).toMatch(keyType === 'rsa-2048' ? /Key Usage: critical\s+Digital Signature, Key Encipherment/ : /Key Usage: critical\s+Digital Signature\n/);
  });

  it('admin: role in unstructuredName, clientAuth only, email SAN (openssl x509 -text)', async () => {
    const { publicKey } = leafKey();
    const pem = await issueCertificate({ issuer: root, subject: { name: 'lead@nvidia.com', org: 'nvidia', type: 'admin', role: 'lead' }, publicKey, now });
    await writeFile(join(dir, 'admin.crt'), pem);
    const { stdout } = await run('openssl', ['x509', '-in', join(dir, 'admin.crt'), '-noout', '-text']);
    expect(stdout).toContain('Subject: CN = lead@nvidia.com, O = nvidia, OU = admin, unstructuredName = lead');
    expect(stdout).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication\n/);
    expect(stdout).toMatch(/Subject Alternative Name:\s+email:lead@nvidia.com/);
    const ok = await run('openssl', ['verify', '-CAfile', join(dir, 'rootCA.pem'), '-attime', String(now.getTime() / 1000), join(dir, 'admin.crt')]);
    expect(ok.stdout).toContain(': OK');
  });

  it('client: SAN DNS:<name>, clientAuth + serverAuth', async () => {
    const { publicKey } = leafKey();
    const pem = await issueCertificate({ issuer: root, subject: { name: 'site-1', org: 'nvidia', type: 'client' }, publicKey, now });
    await writeFile(join(dir, 'client.crt'), pem);
    const { stdout } = await run('openssl', ['x509', '-in', join(dir, 'client.crt'), '-noout', '-text']);
    expect(stdout).toMatch(/Subject Alternative Name:\s+DNS:site-1/);
    expect(stdout).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication, TLS Web Server Authentication/);
    expect(verifyCertificate(pem, { rootCaPem: root.certPem, at: now })).toMatchObject({ name: 'site-1', org: 'nvidia', type: 'client' });
  });

  it('a leaf never outlives its root: notAfter is clamped to the root', async () => {
    const { publicKey } = leafKey();
    const pem = await issueCertificate({ issuer: root, subject: { name: 'site-2', org: 'nvidia', type: 'client' }, publicKey, validDays: 5000, now });
    const v = verifyCertificate(pem, { rootCaPem: root.certPem, at: now });
    expect(v.notAfter.getTime()).toBe(new Date(now.getTime() + 400 * 86_400_000).getTime());
  });
});

describe('issueCertificate refusals', () => {
  it('refuses a common name over 64 characters (E_CERT_CN_TOO_LONG) and a root CN over 64', async () => {
    const root = await createRootCa({ commonName: 'p', now });
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await expectFlareCodeAsync(() => issueCertificate({ issuer: root, subject: { name: 'x'.repeat(65), org: 'o', type: 'client' }, publicKey, now }), 'E_CERT_CN_TOO_LONG');
    await expectFlareCodeAsync(() => createRootCa({ commonName: 'x'.repeat(65) }), 'E_CERT_CN_TOO_LONG');
  });
  it('refuses to issue from an expired root (E_CERT_EXPIRED) and keys of other types (E_CERT_MALFORMED)', async () => {
    const root = await createRootCa({ commonName: 'p', now, validDays: 1 });
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await expectFlareCodeAsync(() => issueCertificate({ issuer: root, subject: { name: 'a', org: 'o', type: 'client' }, publicKey, now: new Date(now.getTime() + 2 * 86_400_000) }), 'E_CERT_EXPIRED');
    const ed = generateKeyPairSync('ed25519').publicKey;
    await expectFlareCodeAsync(() => issueCertificate({ issuer: root, subject: { name: 'a', org: 'o', type: 'client' }, publicKey: ed, now }), 'E_CERT_MALFORMED');
  });
  it('refuses programmer misuse with RangeError', async () => {
    await expect(createRootCa({ commonName: 'p', keyType: 'dsa' as never })).rejects.toBeInstanceOf(RangeError);
    await expect(createRootCa({ commonName: 'p', validDays: 0 })).rejects.toBeInstanceOf(RangeError);
  });
});
