import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import type { AuditEventInput } from '@flare/core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { authorize, loadSitePolicies, parseComponentPolicy, parseResourceRequest, resolvePrivacyScope } from '../src/index.js';
import { registry } from './fakes.js';
import { scratch } from './helpers.js';

let tmp: ReturnType<typeof scratch>;
let local: string;
beforeEach(() => {
  tmp = scratch();
  local = join(tmp.dir, 'local');
  mkdirSync(local);
  // A client kit's local/ folder as FLARE provisions it (defaults), plus a site privacy.json.
  writeFileSync(join(local, 'authorization.json.default'), JSON.stringify({ format_version: '1.0', permissions: { project_admin: 'any', lead: { submit_job: 'any', view: 'any' } } }));
  writeFileSync(join(local, 'resources.json.default'), JSON.stringify({ format_version: 2, components: [{ id: 'resource_manager', path: 'nvflare.app_common.resource_managers.gpu_resource_manager.GPUResourceManager', args: { num_of_gpus: 1, mem_per_gpu_in_GiB: 8 } }] }));
  writeFileSync(join(local, 'privacy.json'), JSON.stringify({ scopes: [{ name: 'public' }, { name: 'private', task_result_filters: [{ name: 'gaussian-dp', args: { epsilon: 1, delta: 1e-5 } }] }], default_scope: 'public' }));
});
afterEach(() => tmp.cleanup());

describe('loadSitePolicies', () => {
  it('loads the four policies from local/ with FLARE\'s names and defaults', async () => {
    const events: AuditEventInput[] = [];
    const site = await loadSitePolicies({ localDir: local, registry, audit: (e) => (events.push(e), undefined) });
    expect(authorize(site.authorization.current, { right: 'list_jobs', user: { name: 'a', org: 'x', role: 'lead' }, siteOrg: 'y' }).allowed).toBe(true);
    expect(resolvePrivacyScope(site.privacy.current!, 'private').taskResultFilters[0]!.name).toBe('gaussian-dp');
    expect(site.resources.current.gpus).toBe(1);
    expect(site.components.current.allow.size).toBe(0);
    expect(events.filter((e) => e.action === 'policy_loaded').map((e) => (e.data as { policy: string }).policy)).toEqual(['authorization', 'privacy', 'resources', 'components']);
    site.close();
  });

  it('a site without privacy.json has no privacy policy; without components.json it uses the given default', async () => {
    const { rmSync } = await import('node:fs');
    rmSync(join(local, 'privacy.json'));
    const site = await loadSitePolicies({ localDir: local, registry, defaultComponents: parseComponentPolicy({ allow: ['fedavg'] }) });
    expect(site.privacy.current).toBeUndefined();
    expect([...site.components.current.allow]).toEqual(['fedavg']);
    site.close();
  });

  it('does not start with an invalid file (a typo in privacy.json fails at start, not mid-job)', async () => {
    writeFileSync(join(local, 'privacy.json'), JSON.stringify({ scopes: [{ name: 'p', task_result_filters: [{ name: 'gaussian-dp', args: { epsilon: 1, delt: 1e-5 } }] }] }));
    await expectFlareCodeAsync(() => loadSitePolicies({ localDir: local, registry }), 'E_POLICY_FILTER_ARGS');
  });

  it('reloads all files; the resource manager follows an accepted resources.json and ignores a refused one', async () => {
    const site = await loadSitePolicies({ localDir: local, registry });
    const rm = site.resourceManager;
    expectFlareCode(() => rm.reserve('j1', parseResourceRequest({ num_of_gpus: 2 })), 'E_POLICY_RESOURCES_EXCEEDED');
    writeFileSync(join(local, 'resources.json'), JSON.stringify({ limits: { num_of_gpus: 2, mem_per_gpu_in_GiB: 8 } }));
    const results = await site.reload();
    expect(results.map((r) => [r.name, r.changed])).toEqual([['authorization', false], ['privacy', false], ['resources', true], ['components', false]]);
    expect(rm.reserve('j1', parseResourceRequest({ num_of_gpus: 2 })).gpuIds).toEqual([0, 1]);
    writeFileSync(join(local, 'resources.json'), JSON.stringify({ limits: { num_of_gpus: -1 } }));
    const [, , resources] = await site.reload();
    expect(resources!.error?.code).toBe('E_POLICY_RESOURCES_PARSE');
    expect(rm.limits.gpus).toBe(2);
    site.close();
    expect(rm.reservations.size).toBe(0);
  });
});
