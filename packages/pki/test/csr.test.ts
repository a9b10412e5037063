import { createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { approveCsr, createCsr, loadKit, packageKit, parseProject, provision, revoke, verifyCertificate, verifyKit, type ProvisionResult } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { projectYaml, run, tempDir } from './helpers.js';

describe('distributed provisioning: createCsr, approveCsr, packageKit', () => {
  let r: ProvisionResult;
  beforeAll(async () => {
    r = await provision(parseProject(projectYaml()), { workspace: await tempDir() });
  });

  it('createCsr makes a key and a PKCS#10 request that openssl verifies, with our subject', async () => {
    const { csrPem, privateKeyPem } = await createCsr({ name: 'site-7', org: 'hospital_g', type: 'client' });
    const dir = await tempDir();
    await writeFile(join(dir, 'site.csr'), csrPem);
    const { stdout, stderr } = await run('openssl', ['req', '-in', join(dir, 'site.csr'), '-verify', '-noout', '-subject']);
    expect(stdout + stderr).toMatch(/verify OK/i);
    expect(stdout).toContain('CN = site-7, O = hospital_g, OU = client');
    expect(createPrivateKey(privateKeyPem).asymmetricKeyType).toBe('ec');
  });

  it('site key never leaves the site: request -> approve -> package gives a kit that verifies (signer: participant)', async () => {
    const req = await createCsr({ name: 'site-7', org: 'hospital_g', type: 'client', keyType: 'rsa-2048' });
    const approved = await approveCsr({ projectDir: r.projectDir, csrPem: req.csrPem });
    expect(approved.identity).toEqual({ name: 'site-7', org: 'hospital_g', type: 'client' });
    const out = join(await tempDir(), 'site-7');
    await packageKit({ certPem: approved.certPem, privateKey: req.privateKeyPem, rootCaPem: approved.rootCaPem, outDir: out, server: { host: 'server1', port: 8002 } });
    const v = await verifyKit(out);
    expect(v.signer).toBe('participant');
    const kit = await loadKit(out);
    expect(kit.participant).toEqual({ name: 'site-7', type: 'client', org: 'hospital_g' });
    expect(kit.server).toMatchObject({ name: 'server1', hosts: ['server1'], port: 8002 });
    // Its certificate chains to the same root as the centrally provisioned kits.
    const server = await loadKit(join(r.prodDir, 'server1'));
    expect(verifyCertificate(kit.certPem, { rootCaPem: server.rootCaPem }).name).toBe('site-7');
  });

  it('approves admins with their role and servers with their requested hosts', async () => {
    const admin = await createCsr({ name: 'ops@site.org', org: 'site', type: 'admin', role: 'org_admin' });
    expect((await approveCsr({ projectDir: r.projectDir, csrPem: admin.csrPem })).identity.role).toBe('org_admin');
    const server = await createCsr({ name: 'fl2.example.com', org: 'site', type: 'server', hosts: ['fl2.example.com', '10.1.1.1'] });
    const a = await approveCsr({ projectDir: r.projectDir, csrPem: server.csrPem });
    const dir = await tempDir();
    await writeFile(join(dir, 's.crt'), a.certPem);
    const { stdout } = await run('openssl', ['x509', '-in', join(dir, 's.crt'), '-noout', '-ext', 'subjectAltName']);
    expect(stdout).toContain('DNS:fl2.example.com, IP Address:10.1.1.1');
  });

  it('refuses a request whose bytes were altered (E_CSR_INVALID)', async () => {
    const { csrPem } = await createCsr({ name: 'site-8', org: 'o', type: 'client' });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[40]! ^= 0x01;
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expectFlareCodeAsync(() => approveCsr({ projectDir: r.projectDir, csrPem: pem }), 'E_CSR_INVALID');
    await expectFlareCodeAsync(() => approveCsr({ projectDir: r.projectDir, csrPem: 'garbage' }), 'E_CSR_INVALID');
  });

  it('refuses names breaking FLARE rules at request time (E_CSR_INVALID)', async () => {
    await expectFlareCodeAsync(() => createCsr({ name: 'client!', org: 'o', type: 'client' }), 'E_CSR_INVALID');
    await expectFlareCodeAsync(() => createCsr({ name: 'a@b.com', org: 'o', type: 'admin' }), 'E_CSR_INVALID');
    await expectFlareCodeAsync(() => createCsr({ name: 'site', org: 'org-x', type: 'client' }), 'E_CSR_INVALID');
  });

  it('refuses a name already held by a valid certificate of another type or org (E_CSR_NAME_TAKEN)', async () => {
    const { csrPem } = await createCsr({ name: 'site-1', org: 'attacker', type: 'client' });
    await expectFlareCodeAsync(() => approveCsr({ projectDir: r.projectDir, csrPem }), 'E_CSR_NAME_TAKEN');
    const asServer = await createCsr({ name: 'site-1', org: 'nvidia', type: 'server' });
    await expectFlareCodeAsync(() => approveCsr({ projectDir: r.projectDir, csrPem: asServer.csrPem }), 'E_CSR_NAME_TAKEN');
  });

  it('refuses a request for a revoked name unless re-admitting it on purpose (E_PROVISION_REVOKED)', async () => {
    const first = await createCsr({ name: 'site-5', org: 'o', type: 'client' });
    await approveCsr({ projectDir: r.projectDir, csrPem: first.csrPem });
    await revoke({ projectDir: r.projectDir, name: 'site-5' });
    const again = await createCsr({ name: 'site-5', org: 'o', type: 'client' });
    await expectFlareCodeAsync(() => approveCsr({ projectDir: r.projectDir, csrPem: again.csrPem }), 'E_PROVISION_REVOKED');
    expect((await approveCsr({ projectDir: r.projectDir, csrPem: again.csrPem, reissueRevoked: true })).identity.name).toBe('site-5');
  });

  it('packageKit refuses a key that is not the certificate\'s, a foreign root and a non-empty folder', async () => {
    const req = await createCsr({ name: 'site-9', org: 'o', type: 'client' });
    const other = await createCsr({ name: 'site-9', org: 'o', type: 'client' });
    const approved = await approveCsr({ projectDir: r.projectDir, csrPem: req.csrPem });
    await expectFlareCodeAsync(() => packageKit({ certPem: approved.certPem, privateKey: other.privateKey, rootCaPem: approved.rootCaPem, outDir: join(r.projectDir, 'x'), server: { host: 'server1' } }), 'E_KIT_INVALID');
    const foreign = await provision(parseProject(projectYaml('', 'elsewhere')), { workspace: await tempDir() });
    const foreignRoot = (await loadKit(join(foreign.prodDir, 'site-1'))).rootCaPem;
    await expectFlareCodeAsync(() => packageKit({ certPem: approved.certPem, privateKey: req.privateKey, rootCaPem: foreignRoot, outDir: join(r.projectDir, 'y'), server: { host: 'server1' } }), 'E_CERT_UNTRUSTED');
    await expectFlareCodeAsync(() => packageKit({ certPem: approved.certPem, privateKey: req.privateKey, rootCaPem: approved.rootCaPem, outDir: r.prodDir, server: { host: 'server1' } }), 'E_KIT_INVALID');
  });
});
