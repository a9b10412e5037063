// Encrypted aggregation in the engines (issue 9's runtime part): real CKKS keys and filters from
// @flare/filters-he; the server holds only the server context and never decrypts.
import { decodeModel, model, tensor, type FilterFactory, type FLModel } from '@flare/core';
import { generateHeKeys, heAggregationScheme, heDecrypt, heDecryptFactory, heEncrypt, heEncryptFactory, isEncryptedModel, type HeContext } from '@flare/filters-he';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { SitePolicy } from '../src/site/policy.js';
import { JobAggregation } from '../src/workflows/aggregation.js';
import { FedAvgAggregator } from '@flare/aggregator';
import { ADMIN, signingAdmin, bundle, closeAll, jobDefinition, learnerFactory, sitePolicy, startServer, startSite, tempDir } from './helpers.js';

let client: HeContext;
let server: HeContext;
beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
});
afterAll(() => {
  client.dispose();
  server.dispose();
});

afterEach(closeAll);

/** A site policy whose scope demands HE both ways (as `flare poc --he` writes into privacy.json). */
function hePolicy(extra: { result?: string[] } = {}): SitePolicy {
  return sitePolicy({
    allowList: ['towards', 'he-encrypt', 'he-decrypt', 'scale-by'],
    filters: heFilters(),
    scopes: [{ name: 'public', task_data_filters: [{ name: 'he-decrypt' }], task_result_filters: [{ name: 'he-encrypt' }, ...(extra.result ?? []).map((n) => ({ name: n }))] }],
  });
}

/** A plaintext result filter (x2) used to show the order the runtime enforces around encryption. */
const scaleBy: FilterFactory<unknown> = {
  name: 'scale-by',
  args: z.object({}).passthrough(),
  create: () => ({
    name: 'scale-by',
    apply: (m: FLModel) => {
      if (isEncryptedModel(m)) throw new Error('scale-by saw ciphertext');
      return m;
    },
  }),
};

const heFilters = (): Map<string, FilterFactory<unknown>> =>
  new Map<string, FilterFactory<unknown>>([
    ['he-encrypt', heEncryptFactory({ context: client }) as FilterFactory<unknown>],
    ['he-decrypt', heDecryptFactory({ context: client }) as FilterFactory<unknown>],
    ['scale-by', scaleBy],
  ]);

async function federation(opts: { he?: HeContext; sites?: Array<{ encrypt: boolean }>; policy?: () => SitePolicy } = {}) {
  const { server: engine, hub, audit } = await startServer(await tempDir(), opts.he === undefined ? {} : { schemes: [heAggregationScheme(opts.he)] });
  const siteAudits = [];
  for (const [i, s] of (opts.sites ?? [{ encrypt: true }, { encrypt: true }, { encrypt: true }]).entries()) {
    const { engine: e, audit: a } = await startSite(i + 1, hub, { policy: s.encrypt ? (opts.policy ?? hePolicy)() : sitePolicy(), learner: learnerFactory(i + 1), filters: heFilters() });
    await e.registered();
    siteAudits.push(a);
  }
  const admin = await signingAdmin(hub, ADMIN, 10_000);
  return { engine, audit, siteAudits, admin };
}

describe('encrypted (HE) rounds in the engines', () => {
  it('runs FedAvg on ciphertexts: the server never decrypts, the global model stays encrypted, and sites decrypt the same result as plaintext FedAvg', async () => {
    expect(server.hasSecretKey).toBe(false);
    const f = await federation({ he: server });
    const id = await f.admin.submit(bundle(jobDefinition()));
    const rec = await f.engine.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    // Sites move w halfway to targets 1, 2, 3: w = 1, 1.5, 1.75 after three rounds (FedAvg of diffs).
    const bytes = await f.admin.download(id);
    f.admin.close();
    const global = decodeModel(bytes);
    expect(isEncryptedModel(global)).toBe(true);
    expect(global.params.has('w')).toBe(false);
    const plain = await heDecrypt({ context: client }).apply(global, { site: 'site-1', job: id, round: 3 });
    for (const x of plain.params.get('w')!.data) expect(Math.abs(Number(x) - 1.75)).toBeLessThan(1e-6);
    for (const h of rec.history) {
      expect(h.encrypted).toBe(true);
      expect(h.aggregate_seconds).toBeGreaterThan(0);
      for (const s of ['site-1', 'site-2', 'site-3']) {
        expect(h.site_metrics[s]!['he_encrypt_ms']).toBeGreaterThanOrEqual(0);
        expect(h.site_metrics[s]!['he_upload_bytes']).toBeGreaterThan(0);
      }
    }
    // Sites validated the decrypted global model: loss of w against site 1's target (1) after round 3.
    expect(rec.history.at(-1)!.metrics['loss']).toBeCloseTo((Math.abs(1.75 - 1) * 10 + Math.abs(1.75 - 2) * 10 + Math.abs(1.75 - 3) * 10) / 30, 5);
    // The server audits what it can see of an encrypted update (no norm: it cannot read one).
    const accepted = f.audit.events.filter((e) => e.action === 'result_accepted');
    expect(accepted).toHaveLength(9);
    for (const e of accepted) {
      expect(e.data).toMatchObject({ encrypted: true, ciphertexts: 1 });
      expect(e.data).not.toHaveProperty('norm');
    }
  });

  it('keeps decryption first and encryption last whatever order the scope and the job list them in', async () => {
    const f = await federation({ he: server, policy: () => hePolicy({ result: ['scale-by'] }) });
    const id = await f.admin.submit(bundle(jobDefinition({ rounds: 1 })));
    const rec = await f.engine.waitForJob(id, 30_000);
    f.admin.close();
    expect(rec.status).toBe('FINISHED');
    const deployed = f.siteAudits[0]!.events.find((e) => e.action === 'deploy_accepted')!;
    expect(deployed.data).toMatchObject({ data_filters: ['he-decrypt'], result_filters: ['scale-by', 'he-encrypt'] });
  });

  it('refuses encrypted updates on a server without an HE context (E_RUNTIME_HE_UNAVAILABLE), rather than averaging ciphertext bytes', async () => {
    const f = await federation();
    const id = await f.admin.submit(bundle(jobDefinition({ rounds: 1, retries: 0 })));
    const rec = await f.engine.waitForJob(id, 30_000);
    f.admin.close();
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_HE_UNAVAILABLE');
    const rejected = f.audit.events.filter((e) => e.action === 'result_rejected');
    expect(rejected).toHaveLength(3);
    for (const e of rejected) expect(e.data?.['code']).toBe('E_RUNTIME_HE_UNAVAILABLE');
  });

  it('refuses a server HE context that holds the secret key (E_HE_SECRET_KEY_PRESENT)', () => {
    expect(() => heAggregationScheme(client)).toThrow(expect.objectContaining({ code: 'E_HE_SECRET_KEY_PRESENT' }));
  });
});

describe('JobAggregation with the HE scheme', () => {
  const plainUpdate = (v: number): FLModel => model({ w: tensor(new Float32Array([v, v]), [2]) }, 'diff');
  const encrypted = async (v: number): Promise<FLModel> => heEncrypt({ context: client }).apply(plainUpdate(v), { site: 'x', job: 'j', round: 0 });

  it('averages plaintext rounds with the plaintext aggregator and encrypted rounds on the HE context', async () => {
    const agg = new JobAggregation({ plain: new FedAvgAggregator({ kind: 'diff' }), schemes: [heAggregationScheme(server)] });
    agg.begin(0, plainUpdate(0));
    agg.accept(plainUpdate(1), { from: 'a' });
    agg.accept(plainUpdate(3), { from: 'b' });
    expect(Array.from(agg.result().params.get('w')!.data as Float32Array)).toEqual([2, 2]);
    agg.begin(1, plainUpdate(0));
    agg.accept(await encrypted(1), { from: 'a' });
    agg.accept(await encrypted(3), { from: 'b' });
    const mean = await heDecrypt({ context: client }).apply(agg.result(), { site: 'a', job: 'j', round: 0 });
    for (const x of mean.params.get('w')!.data) expect(Math.abs(Number(x) - 2)).toBeLessThan(1e-6);
    agg.dispose();
  });

  it('refuses a round mixing encrypted and plaintext updates, either way round (E_RUNTIME_ENCRYPTION_MIXED)', async () => {
    const agg = new JobAggregation({ plain: new FedAvgAggregator({ kind: 'diff' }), schemes: [heAggregationScheme(server)] });
    agg.begin(0, plainUpdate(0));
    agg.accept(plainUpdate(1), { from: 'a' });
    const enc = await encrypted(1);
    expect(() => agg.accept(enc, { from: 'b' })).toThrow(expect.objectContaining({ code: 'E_RUNTIME_ENCRYPTION_MIXED' }));
    agg.begin(1, plainUpdate(0));
    agg.accept(enc, { from: 'a' });
    expect(() => agg.accept(plainUpdate(1), { from: 'b' })).toThrow(expect.objectContaining({ code: 'E_RUNTIME_ENCRYPTION_MIXED' }));
    agg.dispose();
  });

  it('refuses encrypted updates without an HE context (E_RUNTIME_HE_UNAVAILABLE)', async () => {
    const agg = new JobAggregation({ plain: new FedAvgAggregator({ kind: 'diff' }) });
    agg.begin(0, plainUpdate(0));
    const enc = await encrypted(1);
    expect(() => agg.accept(enc, { from: 'a' })).toThrow(expect.objectContaining({ code: 'E_RUNTIME_HE_UNAVAILABLE' }));
  });
});
