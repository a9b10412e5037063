import { FlareError, type FilterFactory, type FLModel, type JsonValue } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CROSS_SITE_EVAL_RESULT, type CrossSiteMatrix } from '../src/workflows/cross-site-eval.js';
import { bundle, closeAll, federation, jobDefinition, sitePolicy } from './helpers.js';

afterEach(closeAll);

const job = (over: Record<string, JsonValue> = {}) => bundle(jobDefinition({ workflow: 'cross_site_eval', rounds: 2, ...over }));
const loss = (m: CrossSiteMatrix, model: string, site: string): number => {
  const cell = m.results[model]![site]!;
  if (!('metrics' in cell)) throw new Error(`${model} x ${site}: ${cell.error.code}`);
  return cell.metrics['loss']!;
};

/** A result filter that zeroes every `full` model leaving the site: only local models are `full` here (updates are diffs). */
const zeroFull: FilterFactory<unknown> = {
  name: 'zero-full',
  args: z.object({}),
  create: () => ({
    name: 'zero-full',
    apply: (m: FLModel) => (m.kind !== 'full' ? m : { ...m, params: new Map([...m.params].map(([k, t]) => [k, { ...t, data: new Float32Array(t.data.length) }])) }),
  }),
};

describe('cross-site evaluation (FLARE CrossSiteModelEval)', () => {
  it('after the training rounds every site validates the final global model and every local model; the admin downloads the matrix', async () => {
    const fed = await federation();
    const id = await fed.admin.submit(job());
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.rounds_done).toBe(2);
    const m = (await fed.admin.result(id, CROSS_SITE_EVAL_RESULT)) as unknown as CrossSiteMatrix;
    expect(m.format).toBe('flare-ts/cross-site-eval/v1');
    expect(m.models).toEqual(['global', 'site-1', 'site-2', 'site-3']);
    expect(m.sites).toEqual(['site-1', 'site-2', 'site-3']);
    // Sites pull w halfway to 1, 2, 3. The global model is 1 after round 0 and 1.5 after round 1; each site's
    // local model is what it made of the round-1 input (w = 1): 1, 1.5, 2. Site m's loss on a model is |w - m|.
    for (const s of [1, 2, 3]) {
      expect(loss(m, 'global', `site-${s}`)).toBeCloseTo(Math.abs(1.5 - s), 5);
      for (const [n, w] of [[1, 1], [2, 1.5], [3, 2]] as const) expect(loss(m, `site-${n}`, `site-${s}`)).toBeCloseTo(Math.abs(w - s), 5);
    }
    expect(m.refused_models).toEqual({});
    expect(fed.serverAudit.events.some((e) => e.action === 'cross_site_eval_done')).toBe(true);
    expect(fed.sites.get('site-2')!.audit.events.some((e) => e.action === 'local_model_released')).toBe(true);
  });

  it("a site whose scope keeps its local model refuses to send it (E_POLICY_LOCAL_MODEL): the matrix says so, and the site still evaluates the others", async () => {
    const keep = sitePolicy({ scopes: [{ name: 'public', share_local_model: false }] });
    const fed = await federation([{}, {}, { policy: keep }]);
    const id = await fed.admin.submit(job());
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    const m = (await fed.admin.result(id, CROSS_SITE_EVAL_RESULT)) as unknown as CrossSiteMatrix;
    expect(m.models).toEqual(['global', 'site-1', 'site-2']);
    expect(m.refused_models['site-3']?.code).toBe('E_POLICY_LOCAL_MODEL');
    expect(loss(m, 'site-1', 'site-3')).toBeCloseTo(2, 5);
    expect(fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'task_failed')?.data?.['code']).toBe('E_POLICY_LOCAL_MODEL');
  });

  it("a local model leaves its site only through that site's result filters", async () => {
    const filters = new Map([['zero-full', zeroFull]]);
    const zeroing = sitePolicy({ filters, scopes: [{ name: 'public', task_result_filters: [{ name: 'zero-full' }] }] });
    const fed = await federation([{ policy: zeroing, filters }, {}, {}]);
    const id = await fed.admin.submit(job());
    expect((await fed.server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    const m = (await fed.admin.result(id, CROSS_SITE_EVAL_RESULT)) as unknown as CrossSiteMatrix;
    // site-1's local model (w = 1) was zeroed by its own filter before it left: every site measures |0 - m|.
    for (const s of [1, 2, 3]) expect(loss(m, 'site-1', `site-${s}`)).toBeCloseTo(s, 5);
    expect(loss(m, 'site-2', 'site-1')).toBeCloseTo(0.5, 5);
  });

  it('refuses bad workflow_args at submit (E_RUNTIME_JOB_INVALID); a result that does not exist yet is E_RUNTIME_JOB_NOT_FOUND', async () => {
    const fed = await federation();
    const bad = fed.admin.submit(job({ workflow_args: { eval_timeout_s: -1 } }));
    await expect(bad).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_INVALID', message: expect.stringMatching(/workflow_args\.eval_timeout_s/) as unknown });
    await expect(fed.admin.submit(job({ workflow_args: { nope: 1 } }))).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_INVALID' });
    const plain = await fed.admin.submit(bundle(jobDefinition({ rounds: 1 })));
    await fed.server.waitForJob(plain, 20_000);
    const missing = await fed.admin.result(plain, CROSS_SITE_EVAL_RESULT).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(FlareError);
    expect((missing as FlareError).code).toBe('E_RUNTIME_JOB_NOT_FOUND');
  });

  it('a site whose scope requires secure aggregation refuses a cross-site evaluation job (E_POLICY_SECAGG_REQUIRED)', async () => {
    const strict = sitePolicy({ scopes: [{ name: 'public', secure_aggregation: 'required' }] });
    const fed = await federation([{}, {}, { policy: strict }]);
    const id = await fed.admin.submit(job({ rounds: 1 }));
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_SECAGG_REQUIRED/);
    const m = (await fed.admin.result(id, CROSS_SITE_EVAL_RESULT)) as unknown as CrossSiteMatrix;
    expect(m.sites).toEqual(['site-1', 'site-2']);
  });
});

describe('job results in the store', () => {
  it('refuses a result name that is not [a-z0-9_-]{1,64} before it touches a path (E_RUNTIME_JOB_INVALID)', async () => {
    const fed = await federation([{}, {}]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, deploy: ['site-1', 'site-2'] })));
    await fed.server.waitForJob(id, 20_000);
    await expect(fed.server.store.saveResult(id, '../escape', {})).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_INVALID' });
    await fed.server.store.saveResult(id, 'ok_name-1', { a: 1 });
    expect(await fed.admin.result(id, 'ok_name-1')).toEqual({ a: 1 });
  });
});
