// The CRL at login (issue #14.10): the server hands its newest root-signed CRL to every site in its welcome; a
// site keeps it only when newer (CRL numbers only go up) and checks job signatures against it, so a revocation
// reaches the sites without re-provisioning.
import { X509Certificate, randomUUID } from 'node:crypto';
import { CrlStore, createCrl, createRootCa } from '@flare/pki';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import { jobTrustFromKit, signJobBundle } from '../src/protocol/job-trust.js';
import { PROJECT, TEST_ROOT, adminKit, bundle, closeAll, jobDefinition, sitePolicy, startServer, startSite, tempDir, until } from './helpers.js';

afterEach(closeAll);

const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '');

describe('the CRL at login (issue #14.10)', () => {
  it('a site takes the newer CRL the server hands over (crl_updated) and then refuses jobs of the admin it revokes (E_POLICY_JOB_SIGNER)', async () => {
    const lead = await adminKit({ name: 'lead@b.org', org: 'org_b', role: 'lead' });
    const crl1 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 1 });
    const crl2 = await createCrl({ issuer: TEST_ROOT, entries: [{ serial: serialOf(lead.certPem), date: new Date() }], crlNumber: 2 });
    const crls = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem, seed: crl1 });
    const { server, hub } = await startServer(await tempDir(), { crl: () => crl2 });
    const jobTrust = jobTrustFromKit({ project: PROJECT, rootCaPem: TEST_ROOT.certPem, crl: () => crls.current?.pem });
    const site = await startSite(1, hub, { policy: { ...sitePolicy(), jobTrust }, crls });
    await site.engine.registered(10_000);
    const updated = await until(() => site.audit.events.find((e) => e.action === 'crl_updated'));
    expect(updated.data).toMatchObject({ crl_number: '2', revoked: 1 });
    expect(crls.crlNumber).toBe(2n);
    const admin = new AdminClient(await hub.connect({ name: 'lead@b.org', org: 'org_b', role: 'lead', type: 'admin' }), { timeoutMs: 10_000, signer: lead });
    const id = randomUUID();
    await admin.submit(signJobBundle(lead, bundle(jobDefinition({ rounds: 1, deploy: ['site-1'], min_clients: 1 })), id), { id });
    const rec = await server.waitForJob(id, 20_000);
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_JOB_SIGNER: .*E_CERT_REVOKED/);
    admin.close();
  });

  it('a site refuses an older CRL from the server (crl_refused, E_CRL_ROLLBACK) and keeps the newer one it has', async () => {
    const crl3 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 3 });
    const crl1 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 1 });
    const crls = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem, seed: crl3 });
    const { hub } = await startServer(await tempDir(), { crl: () => crl1 });
    const site = await startSite(1, hub, { crls });
    await site.engine.registered(10_000);
    const refused = await until(() => site.audit.events.find((e) => e.action === 'crl_refused'));
    expect(refused.data).toMatchObject({ code: 'E_CRL_ROLLBACK' });
    expect(crls.crlNumber).toBe(3n);
    expect(site.engine.jobs()).toEqual([]);
  });

  it('a CRL not signed by the project root is refused (crl_refused, E_CRL_INVALID)', async () => {
    const other = await createRootCa({ commonName: PROJECT });
    const forged = await createCrl({ issuer: other, entries: [], crlNumber: 99 });
    const crls = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem });
    const { hub } = await startServer(await tempDir(), { crl: () => forged });
    const site = await startSite(1, hub, { crls });
    await site.engine.registered(10_000);
    const refused = await until(() => site.audit.events.find((e) => e.action === 'crl_refused'));
    expect(refused.data).toMatchObject({ code: 'E_CRL_INVALID' });
    expect(crls.current).toBeUndefined();
  });
});
