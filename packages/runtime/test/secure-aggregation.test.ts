import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeModel, type FLModel, type JsonValue } from '@flare/core';
import { createRootCa, issueCertificate, type RootCa } from '@flare/pki';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certificateVerifier, kitSigner, type SecAggIdentity } from '../src/workflows/secagg-identity.js';
import { secureAggregationSite } from '../src/workflows/secagg-site.js';
import { secureAggregation } from '../src/workflows/secagg.js';
import { SECURE_AGGREGATION_RESULT, type SecAggSitePhase } from '../src/workflows/secure-aggregation.js';
import { bundle, closeAll, federation, jobDefinition, type SiteOptions } from './helpers.js';

afterEach(closeAll);

let ca: RootCa;
let otherCa: RootCa;
beforeAll(async () => {
  ca = await createRootCa({ commonName: 'secagg-project' });
  otherCa = await createRootCa({ commonName: 'another-project' });
});

async function identity(name: string, issuer: RootCa = ca): Promise<SecAggIdentity> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer, subject: { name, org: 'org', type: 'client' }, publicKey });
  return { privateKey, certPem, rootCaPem: ca.certPem };
}

/** Site options for site-n: its identity, the towards learner (default), and an optional phase at which it drops. */
async function secAggSite(n: number, o: { dropAt?: SecAggSitePhase | undefined; issuer?: RootCa } = {}): Promise<SiteOptions> {
  const id = await identity(`site-${n}`, o.issuer);
  const beforeAnswer = (phase: SecAggSitePhase): void => {
    if (phase === o.dropAt) throw new Error(`site-${n} leaves at ${phase} (test)`);
  };
  return { workflows: [secureAggregationSite({ identity: id, beforeAnswer })] };
}

const deploy = (n: number): string[] => Array.from({ length: n }, (_, i) => `site-${i + 1}`);
const job = (n: number, over: Record<string, JsonValue> = {}) =>
  bundle(jobDefinition({ workflow: 'secure_aggregation', rounds: 1, min_clients: 2, deploy: deploy(n), workflow_args: { clip: 10, bits: 24 }, ...over }));
const wOf = (m: FLModel): number[] => [...(m.params.get('w')!.data as Float32Array)];
const server = () => ({ server: { workflows: [secureAggregation({ rootCaPem: ca.certPem })] } });

describe('secure-aggregation workflow (SecAgg+ relayed by the server)', () => {
  it('5 sites, one drops before its masked input and one during unmasking: the global model moves by the mean of the summed updates', async () => {
    const sites = await Promise.all([1, 2, 3, 4, 5].map((n) => secAggSite(n, { dropAt: n === 2 ? 'masked-input' : n === 4 ? 'unmask' : undefined })));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job(5));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    // site-4 sent its masked input before it left: it is in the sum; site-2 never did.
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-3', 'site-4', 'site-5']);
    // towards(n) sends the diff (n - 0)/2 per coordinate: the mean over the summed sites.
    const expected = (1 + 3 + 4 + 5) / 2 / 4;
    for (const w of wOf(decodeModel(await fed.admin.download(id)))) expect(w).toBeCloseTo(expected, 3);
    const result = (await fed.admin.result(id, SECURE_AGGREGATION_RESULT)) as { rounds: Array<{ summed: string[]; dropped: Record<string, string[]>; codes: Record<string, string> }> };
    expect(result.rounds[0]!.dropped.maskedInput).toEqual(['site-2']);
    expect(result.rounds[0]!.dropped.unmask).toEqual(['site-4']);
    expect(result.rounds[0]!.codes['site-2']).toBe('E_RUNTIME_TASK_FAILED');
    // Every message of the site carrying its update left it masked (audited at the site, never the update itself).
    expect(fed.sites.get('site-1')!.audit.events.some((e) => e.action === 'secagg_input_masked')).toBe(true);
  });

  it('fails the round with E_SECAGG_TOO_FEW when fewer sites than the threshold send masked inputs', async () => {
    const sites = await Promise.all([1, 2, 3].map((n) => secAggSite(n, { dropAt: n === 1 ? undefined : 'masked-input' })));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job(3, { workflow_args: { clip: 10, dropout_fraction: 0.2 } }));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_SECAGG_TOO_FEW');
  });

  it("refuses round keys signed under a certificate the project root did not issue (E_SECAGG_SIGNATURE); the round goes on without that site", async () => {
    const sites = await Promise.all([1, 2, 3, 4].map((n) => secAggSite(n, n === 3 ? { issuer: otherCa } : {})));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job(4, { workflow_args: { clip: 10, dropout_fraction: 0.25 } }));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2', 'site-4']);
    const refused = fed.serverAudit.events.find((e) => e.action === 'secagg_message_refused');
    expect(refused?.data).toMatchObject({ site: 'site-3', code: 'E_SECAGG_SIGNATURE' });
  });

  it('refuses at submit what cannot run on masked inputs: a robust aggregator, a server-side norm bound (E_SECAGG_INCOMPATIBLE)', async () => {
    const fed = await federation([await secAggSite(1), await secAggSite(2)], server());
    await expect(fed.admin.submit(job(2, { aggregator: { name: 'krum', args: { f: 0 } } }))).rejects.toMatchObject({ code: 'E_SECAGG_INCOMPATIBLE' });
    await expect(fed.admin.submit(job(2, { aggregator: { name: 'fedavg', args: { normBound: 'adaptive' } } }))).rejects.toMatchObject({ code: 'E_SECAGG_INCOMPATIBLE' });
    await expect(fed.admin.submit(job(2, { workflow_args: { bits: 20 } }))).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_INVALID', message: expect.stringMatching(/workflow_args\.clip/) as unknown });
  });
});

describe('secure-aggregation identities (kit key signs, certificate verifies)', () => {
  const message = new TextEncoder().encode('round keys');
  const sign = (key: KeyObject) => kitSigner(key).sign(message);

  it('verifies a signature under the site certificate the project root issued, and nothing else', async () => {
    const a = await identity('site-a');
    const b = await identity('site-b');
    const foreign = await identity('site-c', otherCa);
    const certs = new Map([
      ['site-a', a.certPem],
      ['site-c', foreign.certPem],
      // The server relabels site-b's certificate as site-d's: the CN does not match.
      ['site-d', b.certPem],
    ]);
    const v = certificateVerifier(ca.certPem, certs);
    expect(v.verify('site-a', message, sign(a.privateKey))).toBe(true);
    expect(v.verify('site-a', message, sign(b.privateKey))).toBe(false);
    expect(v.verify('site-c', message, sign(foreign.privateKey))).toBe(false);
    expect(v.verify('site-d', message, sign(b.privateKey))).toBe(false);
    expect(v.verify('site-b', message, sign(b.privateKey))).toBe(false);
    expect(v.verify('site-a', message, new Uint8Array(3))).toBe(false);
  });
});
