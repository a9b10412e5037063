// The files FLARE's StaticFileBuilder writes into every kit (nvflare/lighter/templates/*.j2, FLARE 2.9), kept
// with FLARE's names and contents so a FLARE user finds what they expect. Internal: not exported.
import type { JsonValue } from '@flare/core';
import type { Participant, Project } from './project.js';

/** FLARE's default site policy (templates/default_authz.j2): roles org_admin, lead, member; project_admin any. */
export const DEFAULT_AUTHORIZATION: JsonValue = {
  format_version: '1.0',
  permissions: {
    project_admin: 'any',
    org_admin: {
      submit_job: 'none',
      clone_job: 'none',
      manage_job: 'o:submitter',
      download_job: 'o:submitter',
      view: 'any',
      operate: 'o:site',
      shell_commands: 'o:site',
      byoc: 'none',
    },
    lead: {
      submit_job: 'any',
      clone_job: 'n:submitter',
      manage_job: 'n:submitter',
      download_job: 'n:submitter',
      view: 'any',
      operate: 'o:site',
      shell_commands: 'o:site',
      byoc: 'any',
    },
    member: { view: 'any' },
  },
};

/** FLARE's privacy.json sample (templates/sample_privacy.j2): two scopes, public and private. */
export const SAMPLE_PRIVACY: JsonValue = {
  scopes: [
    {
      name: 'public',
      properties: { train_dataset: '/data/public/train', val_dataset: '/data/public/val' },
      task_result_filters: [
        { name: 'AddNoiseToMinMax', args: { min_noise_level: 0.2, max_noise_level: 0.2 } },
        { name: 'PercentilePrivacy', args: { percentile: 10, gamma: 0.02 } },
      ],
      task_data_filters: [{ name: 'BadModelDetector' }],
    },
    {
      name: 'private',
      properties: { train_dataset: '/data/private/train', val_dataset: '/data/private/val' },
      task_result_filters: [
        { name: 'AddNoiseToMinMax', args: { min_noise_level: 0.1, max_noise_level: 0.1 } },
        { name: 'SVTPrivacy', args: { fraction: 0.1, epsilon: 0.2 } },
      ],
    },
  ],
  default_scope: 'public',
};

/** FLARE's server resources.json.default (templates/local_server_resources.j2). */
export function serverResources(): JsonValue {
  return {
    format_version: 2,
    servers: [{ admin_storage: 'transfer', max_num_clients: 100, heart_beat_timeout: 600, download_job_url: 'http://download.server.com/', admin_timeout: 10.0 }],
    snapshot_persistor: {
      path: 'nvflare.app_common.state_persistors.storage_state_persistor.StorageStatePersistor',
      args: { uri_root: '/', storage: { path: 'nvflare.app_common.storages.filesystem_storage.FilesystemStorage', args: { root_dir: '/tmp/nvflare/snapshot-storage', uri_root: '/' } } },
    },
    components: [
      { id: 'job_scheduler', path: 'nvflare.app_common.job_schedulers.job_scheduler.DefaultJobScheduler', args: { max_jobs: 4 } },
      { id: 'job_manager', path: 'nvflare.apis.impl.job_def_manager.SimpleJobDefManager', args: { uri_root: '/tmp/nvflare/jobs-storage', job_store_id: 'job_store' } },
      { id: 'job_store', path: 'nvflare.app_common.storages.filesystem_storage.FilesystemStorage' },
    ],
  };
}

/** FLARE's client resources.json.default (templates/local_client_resources.j2), with the participant's capacity. */
export function clientResources(p: Participant): JsonValue {
  return {
    format_version: 2,
    client: { retry_timeout: 30, compression: 'Gzip' },
    components: [
      {
        id: 'resource_manager',
        path: 'nvflare.app_common.resource_managers.gpu_resource_manager.GPUResourceManager',
        args: { num_of_gpus: p.capacity?.numOfGpus ?? 0, mem_per_gpu_in_GiB: p.capacity?.memPerGpuInGiB ?? 0 },
      },
      { id: 'resource_consumer', path: 'nvflare.app_common.resource_consumers.gpu_resource_consumer.GPUResourceConsumer', args: {} },
    ],
  };
}

/** startup/start.sh (fl_admin.sh for admins): runs our CLI on this kit; the CLI verifies the kit first. */
export function startScript(p: Participant): string {
  const command = p.type === 'admin' ? 'admin' : p.type === 'server' ? 'server' : p.type === 'relay' ? 'relay' : 'client';
  return [
    '#!/usr/bin/env sh',
    `# Starts ${p.type} '${p.name}' of this FLARE-TS project. The flare command verifies every signed file of`,
    '# this kit before it starts and stops with the name of any file that was changed.',
    'DIR="$(cd "$(dirname "$0")/.." && pwd)"',
    `exec flare ${command} --kit "$DIR" "$@"`,
    '',
  ].join('\n');
}

/** readme.txt at the top of each kit. */
export function readme(project: Project, p: Participant): string {
  const script = p.type === 'admin' ? 'startup/fl_admin.sh' : 'startup/start.sh';
  return [
    `FLARE-TS startup kit of ${p.type} '${p.name}' (org ${p.org}) in project '${project.name}'.`,
    '',
    'Keep this folder private: startup/*.key is this participant\'s private key (mode 0600).',
    `Start with ${script}; check the kit at any time with: flare kit verify <this folder>.`,
    '',
    'Every file here is signed by the project root CA (signature.json in each folder). Any change to a signed',
    'file stops the participant at start. Site-specific settings go into local/ as new files without the',
    '.default / .sample suffix (e.g. local/authorization.json overrides local/authorization.json.default):',
    'local/ is verified too, so add those files before or through re-provisioning, or keep them outside the kit.',
    '',
  ].join('\n');
}
