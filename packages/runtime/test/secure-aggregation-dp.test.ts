import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { type JsonValue } from '@flare/core';
import { openPrivacyLedger } from '@flare/filters-dp';
import { createRootCa, issueCertificate, type RootCa } from '@flare/pki';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SecAggBudget } from '../src/workflows/secagg-dp.js';
import { secureAggregationSite } from '../src/workflows/secagg-site.js';
import { secureAggregation } from '../src/workflows/secagg.js';
import { bundle, closeAll, federation, jobDefinition, tempDir, type SiteOptions } from './helpers.js';

afterEach(closeAll);

let ca: RootCa;
beforeAll(async () => {
  ca = await createRootCa({ commonName: 'secagg-dp-project' });
});

async function site(n: number, budget: (name: string) => Promise<SecAggBudget | undefined>): Promise<SiteOptions> {
  const name = `site-${n}`;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueCertificate({ issuer: ca, subject: { name, org: 'org', type: 'client' }, publicKey });
  const b = await budget(name);
  return { workflows: [secureAggregationSite({ identity: { privateKey, certPem, rootCaPem: ca.certPem }, ...(b === undefined ? {} : { budget: b }) })] };
}

const ledgerBudget = (maxEpsilon: number) => async (name: string): Promise<SecAggBudget> => ({ ledger: openPrivacyLedger(join(await tempDir(), 'dp-budget'), { site: name }), maxEpsilon });
const deploy = ['site-1', 'site-2', 'site-3', 'site-4'];
const job = (args: Record<string, JsonValue>, over: Record<string, JsonValue> = {}) =>
  bundle(jobDefinition({ workflow: 'secure_aggregation', rounds: 2, min_clients: 2, deploy, workflow_args: { clip: 1, bits: 24, dropout_fraction: 0.25, ...args }, ...over }));
const server = () => ({ server: { workflows: [secureAggregation({ rootCaPem: ca.certPem })] } });

describe('secure aggregation with distributed DP (discrete Gaussian, each site charging its own ledger)', () => {
  it('each site charges its own budget per round and reports the epsilon it spent, within the job\'s target', async () => {
    const sites = await Promise.all([1, 2, 3, 4].map((n) => site(n, ledgerBudget(10))));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job({ dp: { epsilon: 8, delta: 1e-5 } }));
    const rec = await fed.server.waitForJob(id, 120_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    const [r0, r1] = rec.history;
    for (const s of deploy) {
      const e0 = r0!.site_metrics[s]?.['epsilon'];
      const e1 = r1!.site_metrics[s]?.['epsilon'];
      expect(e0, s).toBeGreaterThan(0);
      // The ledger composes: after two rounds more is spent than after one, and no more than the job's target.
      expect(e1!, s).toBeGreaterThan(e0!);
      expect(e1!, s).toBeLessThanOrEqual(8);
    }
  });

  it("a site refuses a round its own budget cannot pay for (E_DP_BUDGET_EXHAUSTED) and drops; the round fails when fewer remain than the noise counts on (E_SECAGG_DP_TOO_FEW)", async () => {
    const sites = await Promise.all([1, 2, 3, 4].map((n) => site(n, ledgerBudget(n <= 2 ? 0.5 : 100))));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job({ dp: { epsilon: 8, delta: 1e-5 } }, { rounds: 1 }));
    const rec = await fed.server.waitForJob(id, 120_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_SECAGG_DP_TOO_FEW');
    const refused = fed.serverAudit.events.filter((e) => e.action === 'result_missing' && (e.data as { code?: string } | undefined)?.code === 'E_DP_BUDGET_EXHAUSTED');
    expect(refused.map((e) => (e.data as { site: string }).site).sort()).toEqual(['site-1', 'site-2']);
  });

  it('a site without a privacy ledger refuses a distributed-DP job at deploy (E_SECAGG_CONFIG)', async () => {
    const sites = await Promise.all([1, 2].map((n) => site(n, () => Promise.resolve(undefined))));
    const fed = await federation(sites, server());
    const id = await fed.admin.submit(job({ dp: { epsilon: 8, delta: 1e-5 } }, { deploy: ['site-1', 'site-2'], rounds: 1 }));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status).not.toBe('FINISHED');
    expect(Object.values(rec.refused).join(' ')).toMatch(/E_SECAGG_CONFIG/);
  });
});
