import { expectFlareCode } from '@flare/core/testing';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_CONCURRENT_JOBS, parseComponentPolicy, parseResourcePolicy, parseResourceRequest } from '../src/index.js';


/** A file @flare/pki provisions, copied into test/fixtures/provisioned/ (see the README there). */
const provisioned = (name: string): Uint8Array => readFileSync(new URL(`./fixtures/provisioned/${name}`, import.meta.url));

// FLARE's provisioned local/resources.json.default for a client (nvflare/lighter/templates/local_client_resources.j2,
// rendered with num_gpus=2, gpu_mem=16).
const flareClientDefault = {
  format_version: 2,
  client: { retry_timeout: 30, compression: 'Gzip' },
  components: [
    { id: 'resource_manager', path: 'nvflare.app_common.resource_managers.gpu_resource_manager.GPUResourceManager', args: { num_of_gpus: 2, mem_per_gpu_in_GiB: 16 } },
    { id: 'resource_consumer', path: 'nvflare.app_common.resource_consumers.gpu_resource_consumer.GPUResourceConsumer', args: {} },
    { id: 'process_launcher', path: 'nvflare.app_common.job_launcher.client_process_launcher.ClientProcessJobLauncher', args: {} },
  ],
};

describe('the local/ files @flare/pki provisions (test/fixtures/provisioned, copied from real kits)', () => {
  it("parses a server kit's resources.json.default (FLARE's server format): max_jobs of the job scheduler, nothing else limited", () => {
    expect(parseResourcePolicy(provisioned('server-resources.json.default'))).toEqual({
      maxConcurrentJobs: 4,
      memoryGiB: Infinity,
      gpus: 0,
      memPerGpuGiB: 0,
      maxWallTimeS: Infinity,
    });
  });
  it("parses a client kit's resources.json.default: the participant's capacity from project.yml", () => {
    expect(parseResourcePolicy(provisioned('client-resources.json.default'))).toMatchObject({ maxConcurrentJobs: DEFAULT_MAX_CONCURRENT_JOBS, gpus: 2, memPerGpuGiB: 16 });
  });
  it('parses the provisioned components.json.default: nothing admitted, no BYOC', () => {
    const c = parseComponentPolicy(provisioned('components.json.default'));
    expect([...c.allow]).toEqual([]);
    expect(c.byoc).toBe(false);
  });
});

describe('parseResourcePolicy', () => {
  it('reads FLARE\'s resources.json.default: GPU limits from the GPUResourceManager args, the rest defaulted', () => {
    expect(parseResourcePolicy(JSON.stringify(flareClientDefault))).toEqual({
      maxConcurrentJobs: DEFAULT_MAX_CONCURRENT_JOBS,
      memoryGiB: Infinity,
      gpus: 2,
      memPerGpuGiB: 16,
      maxWallTimeS: Infinity,
    });
  });
  it('reads our limits', () => {
    expect(parseResourcePolicy({ format_version: 2, limits: { max_concurrent_jobs: 2, memory_gib: 64, num_of_gpus: 1, mem_per_gpu_in_GiB: 24, max_wall_time_s: 3600 } })).toEqual({
      maxConcurrentJobs: 2,
      memoryGiB: 64,
      gpus: 1,
      memPerGpuGiB: 24,
      maxWallTimeS: 3600,
    });
    expect(parseResourcePolicy({}).gpus).toBe(0);
  });
  it("reads a FLARE server file's DefaultJobScheduler max_jobs as the jobs that may run at once", () => {
    const server = (maxJobs: unknown) => ({
      format_version: 2,
      servers: [{ admin_storage: 'transfer', max_num_clients: 100, heart_beat_timeout: 600 }],
      snapshot_persistor: { path: 'nvflare.app_common.state_persistors.storage_state_persistor.StorageStatePersistor', args: { uri_root: '/' } },
      components: [{ id: 'job_scheduler', path: 'nvflare.app_common.job_schedulers.job_scheduler.DefaultJobScheduler', args: { max_jobs: maxJobs } }],
    });
    expect(parseResourcePolicy(server(2)).maxConcurrentJobs).toBe(2);
    expect(parseResourcePolicy({ ...server(2), limits: { max_concurrent_jobs: 2 } }).maxConcurrentJobs).toBe(2);
    expect(expectFlareCode(() => parseResourcePolicy({ ...server(2), limits: { max_concurrent_jobs: 3 } }), 'E_POLICY_RESOURCES_PARSE').message).toMatch(/max_jobs \(2\) disagree/);
    for (const bad of [0, 1.5, '4', -1]) expectFlareCode(() => parseResourcePolicy(server(bad)), 'E_POLICY_RESOURCES_PARSE');
  });
  it('accepts limits and FLARE component args that agree, refuses ones that disagree', () => {
    expect(parseResourcePolicy({ ...flareClientDefault, limits: { num_of_gpus: 2 } }).gpus).toBe(2);
    expect(expectFlareCode(() => parseResourcePolicy({ ...flareClientDefault, limits: { num_of_gpus: 4 } }), 'E_POLICY_RESOURCES_PARSE').message).toMatch(/disagree/);
  });
  const bad: Array<[string, unknown]> = [
    ['a negative memory', { limits: { memory_gib: -1 } }],
    ['a fractional GPU count', { limits: { num_of_gpus: 1.5 } }],
    ['zero concurrent jobs', { limits: { max_concurrent_jobs: 0 } }],
    ['a zero wall time', { limits: { max_wall_time_s: 0 } }],
    ['a misspelt limit', { limits: { max_concurent_jobs: 2 } }],
    ['a string where a number belongs', { limits: { memory_gib: '64' } }],
    ['a format_version other than 2', { format_version: 1 }],
    ['an unknown top-level key', { format_version: 2, serverz: [] }],
    ['servers that is not a list of objects', { servers: { admin_storage: 'transfer' } }],
    ['bad GPU manager args', { components: [{ id: 'resource_manager', path: 'x.GPUResourceManager', args: { num_of_gpus: -2 } }] }],
  ];
  for (const [title, value] of bad) {
    it(`refuses ${title} (E_POLICY_RESOURCES_PARSE)`, () => {
      expectFlareCode(() => parseResourcePolicy(value), 'E_POLICY_RESOURCES_PARSE');
    });
  }
});

describe('parseResourceRequest', () => {
  it('reads FLARE\'s per-site resource_spec and our memory and wall time', () => {
    expect(parseResourceRequest({ num_of_gpus: 1, mem_per_gpu_in_GiB: 8 })).toEqual({ gpus: 1, memPerGpuGiB: 8, memoryGiB: 0 });
    expect(parseResourceRequest({ memory_gib: 4, wall_time_s: 60 })).toEqual({ gpus: 0, memPerGpuGiB: 0, memoryGiB: 4, wallTimeS: 60 });
    expect(parseResourceRequest(undefined)).toEqual({ gpus: 0, memPerGpuGiB: 0, memoryGiB: 0 });
  });
  it('refuses a spec that is not an object of such numbers (FLARE: "expecting a dictionary")', () => {
    expectFlareCode(() => parseResourceRequest(3), 'E_POLICY_RESOURCES_PARSE');
    expectFlareCode(() => parseResourceRequest({ num_of_gpus: 'one' }), 'E_POLICY_RESOURCES_PARSE');
    expectFlareCode(() => parseResourceRequest({ gpus: 1 }), 'E_POLICY_RESOURCES_PARSE');
  });
});
