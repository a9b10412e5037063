// Secure aggregation checks neighbours against the newest CRL a site holds (issue #14.10, the leftovers): a site
// revoked after provisioning, its revocation pushed by the server, is refused as a secagg peer at every other
// site (E_SECAGG_SIGNATURE: its round keys carry no valid signature), without re-provisioning. The server here
// keeps the revoked site in the round (in-memory channels carry no serial for it to cut), standing in for a
// server that does not cut it: the sites' own check is what refuses it.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createCrl, createRootCa, CrlStore, issueCertificate, loadCrl, verifyCertificate, type RootCa } from '@flare/pki';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certificateVerifier, kitSigner, type SecAggIdentity } from '../src/workflows/secagg-identity.js';
import { secureAggregationSite } from '../src/workflows/secagg-site.js';
import { secureAggregation } from '../src/workflows/secagg.js';
import { bundle, closeAll, federation, jobDefinition, until, type SiteOptions } from './helpers.js';

afterEach(closeAll);

let ca: RootCa;
beforeAll(async () => {
  ca = await createRootCa({ commonName: 'secagg-crl-project' });
});

async function identity(name: string): Promise<SecAggIdentity & { serial: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer: ca, subject: { name, org: 'org', type: 'client' }, publicKey });
  return { privateKey, certPem, rootCaPem: ca.certPem, serial: verifyCertificate(certPem, { rootCaPem: ca.certPem }).serial };
}

const revoking = (serials: string[], crlNumber: number): Promise<string> => createCrl({ issuer: ca, entries: serials.map((serial) => ({ serial, date: new Date() })), crlNumber });

describe('secure aggregation uses the newest CRL a site holds', () => {
  it('certificateVerifier reads the CRL at each check: a neighbour revoked later has no valid signature any more', async () => {
    const a = await identity('site-a');
    const message = new TextEncoder().encode('round keys');
    const sign = (key: KeyObject): Uint8Array => kitSigner(key).sign(message);
    let crl: string | undefined = await revoking([], 1);
    const v = certificateVerifier(ca.certPem, new Map([['site-a', a.certPem]]), () => crl);
    expect(v.verify('site-a', message, sign(a.privateKey))).toBe(true);
    crl = await revoking([a.serial], 2);
    expect(v.verify('site-a', message, sign(a.privateKey))).toBe(false);
  });

  it('a site revoked after provisioning, its revocation pushed, is refused as a peer at every site (E_SECAGG_SIGNATURE)', async () => {
    const ids = await Promise.all([1, 2, 3, 4].map((n) => identity(`site-${n}`)));
    const stores = await Promise.all(ids.map(() => CrlStore.open({ rootCaPem: ca.certPem })));
    const sites: SiteOptions[] = ids.map((id, i) => ({
      crls: stores[i]!,
      // The kit carries no CRL (provisioned before the revocation): only the pushed one can refuse site-3.
      workflows: [secureAggregationSite({ identity: { privateKey: id.privateKey, certPem: id.certPem, rootCaPem: id.rootCaPem, crl: () => stores[i]!.current?.pem } })],
    }));
    const fed = await federation(sites, { server: { workflows: [secureAggregation({ rootCaPem: ca.certPem })] } });
    fed.server.applyCrl(loadCrl(await revoking([ids[2]!.serial], 7), { rootCaPem: ca.certPem }));
    for (const n of [1, 2, 4]) {
      await until(() => fed.sites.get(`site-${n}`)!.audit.events.find((e) => e.action === 'crl_updated'), 30_000, `crl_updated at site-${n}`);
    }
    const id = await fed.admin.submit(bundle(jobDefinition({ workflow: 'secure_aggregation', rounds: 1, min_clients: 2, deploy: ['site-1', 'site-2', 'site-3', 'site-4'], workflow_args: { clip: 10, dropout_fraction: 0.25 } })));
    const rec = await fed.server.waitForJob(id, 60_000);
    // No honest site goes on with site-3 as a neighbour: the round cannot sum anything with it.
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_SECAGG_TOO_FEW');
    for (const n of [1, 2, 4]) {
      const refused = fed.sites.get(`site-${n}`)!.audit.events.find((e) => e.action === 'task_failed' && e.data?.['code'] === 'E_SECAGG_SIGNATURE');
      expect(refused?.msg, `site-${n} refuses site-3's keys`).toContain('the keys advertised for site-3');
    }
    // site-3's own check of the others is unaffected (they are not revoked).
    expect(fed.sites.get('site-3')!.audit.events.some((e) => e.action === 'task_failed' && e.data?.['code'] === 'E_SECAGG_SIGNATURE')).toBe(false);
  });

  it("the server checks round keys against its newest CRL too: a site revoked after start is refused on arrival (E_SECAGG_SIGNATURE) and the round goes on without it", async () => {
    const ids = await Promise.all([1, 2, 3, 4].map((n) => identity(`site-${n}`)));
    const server: { crl?: string } = {};
    const sites: SiteOptions[] = ids.map((id) => ({ workflows: [secureAggregationSite({ identity: { privateKey: id.privateKey, certPem: id.certPem, rootCaPem: id.rootCaPem } })] }));
    const fed = await federation(sites, { server: { workflows: [secureAggregation({ rootCaPem: ca.certPem, crlPem: () => server.crl })] } });
    // Revoked after the server started: the function is read at each check.
    server.crl = await revoking([ids[2]!.serial], 3);
    const id = await fed.admin.submit(bundle(jobDefinition({ workflow: 'secure_aggregation', rounds: 1, min_clients: 2, deploy: ['site-1', 'site-2', 'site-3', 'site-4'], workflow_args: { clip: 10, dropout_fraction: 0.25 } })));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2', 'site-4']);
    expect(fed.serverAudit.events.find((e) => e.action === 'secagg_message_refused')?.data).toMatchObject({ site: 'site-3', code: 'E_SECAGG_SIGNATURE' });
  });
});
