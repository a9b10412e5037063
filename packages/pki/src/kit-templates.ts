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

/**
 * local/privacy.json.sample: FLARE's sample layout (templates/sample_privacy.j2: scopes `public` and
 * `private`, `default_scope`), naming the filters FLARE-TS sites register (@flare/filters-dp), so that
 * copying it to local/privacy.json loads as is. FLARE's own sample names AddNoiseToMinMax and
 * BadModelDetector, which FLARE-TS does not have; its PercentilePrivacy and SVTPrivacy are here under their
 * FLARE-TS names with FLARE's arguments.
 */
export const SAMPLE_PRIVACY: JsonValue = {
  scopes: [
    {
      name: 'public',
      properties: { train_dataset: '/data/public/train', val_dataset: '/data/public/val' },
      task_result_filters: [{ name: 'percentile-privacy', args: { percentile: 10, gamma: 0.02 } }],
      task_data_filters: [],
    },
    {
      name: 'private',
      properties: { train_dataset: '/data/private/train', val_dataset: '/data/private/val' },
      task_result_filters: [
        { name: 'gaussian-dp', args: { clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 8, delta: 1e-5 } } },
        { name: 'svt-privacy', args: { fraction: 0.1, epsilon: 0.2 } },
      ],
      task_data_filters: [],
    },
  ],
  default_scope: 'public',
};

/** FLARE's server resources.json.default (templates/local_server_resources.j2, FLARE 2.9). */
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
      { id: 'process_launcher', path: 'nvflare.app_common.job_launcher.server_process_launcher.ServerProcessJobLauncher', args: {} },
      { id: 'log_receiver', path: 'nvflare.app_common.logging.log_receiver.LogReceiver', args: {} },
    ],
  };
}

/** FLARE's client resources.json.default (templates/local_client_resources.j2, FLARE 2.9), with the participant's capacity. */
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
      { id: 'process_launcher', path: 'nvflare.app_common.job_launcher.client_process_launcher.ClientProcessJobLauncher', args: {} },
      { id: 'error_log_sender', path: 'nvflare.app_common.logging.log_sender.ErrorLogSender', args: {} },
    ],
  };
}

/** A site's component allow-list as {@link provision} writes it: registered names and BYOC consent. */
export interface ComponentAllowList {
  /** Registered component names the site admits, exactly (no patterns). */
  readonly allow: readonly string[];
  /** Whether the site consents to job-supplied code (default false). */
  readonly byoc?: boolean;
}

// @flare/policy's parseComponentPolicy accepts these names and at most this many (pki may not import policy:
// the rule is repeated here so that a provisioned file always loads).
const COMPONENT_NAME = /^[A-Za-z0-9_.:@/-]{1,256}$/;
const MAX_COMPONENTS = 4096;

/**
 * local/components.json.default: the component allow-list in @flare/policy's format (FLARE has no such file).
 * Empty unless the provisioner lists names: a site admits no component until it says which ones it trusts,
 * in local/components.json (its own override) or through `provision({ components })`.
 *
 * @throws RangeError for a name @flare/policy would refuse, or more than 4,096 names.
 */
export function componentAllowList(list: ComponentAllowList | undefined): JsonValue {
  const allow = [...new Set(list?.allow ?? [])];
  if (allow.length > MAX_COMPONENTS) throw new RangeError(`"components.allow" expected at most ${MAX_COMPONENTS} names, got ${allow.length}`);
  for (const name of allow) {
    if (!COMPONENT_NAME.test(name)) throw new RangeError(`"components.allow" expected registered names (letters, digits, _ . : @ / -; 1 to 256 characters), got ${JSON.stringify(name).slice(0, 80)}`);
  }
  return { format_version: '1.0', allow, byoc: list?.byoc ?? false };
}

/**
 * startup/start.sh (fl_admin.sh for admins): runs our CLI on this kit; the CLI verifies the kit first. It
 * looks for the CLI in this order: `$FLARE_CLI` (a command), `flare` on PATH, the CLI that provisioned the
 * kit (`cliPath`, when it still exists on this machine), `npx --no-install flare` (a project that has
 * @flare/cli installed); else it prints what to install and exits 127 with E_CLI_NOT_FOUND.
 */
export function startScript(p: Participant, cliPath?: string): string {
  const command = p.type === 'admin' ? 'admin' : p.type === 'server' ? 'server' : p.type === 'relay' ? 'relay' : 'client';
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/usr/bin/env sh',
    `# Starts ${p.type} '${p.name}' of this FLARE-TS project. The flare command verifies every signed file of`,
    '# this kit before it starts and stops with the name of any file that was changed.',
    '# The kit folder, with shell builtins only (this script must run even where PATH finds nothing).',
    'case "$0" in */*) HERE="${0%/*}" ;; *) HERE=. ;; esac',
    'DIR="$(cd "$HERE/.." && pwd)"',
    `set -- ${command} --kit "$DIR" "$@"`,
    '# FLARE_CLI: the command to run flare with, e.g. FLARE_CLI="node /opt/flare-ts/packages/cli/dist/bin.js".',
    'if [ -n "$FLARE_CLI" ]; then exec $FLARE_CLI "$@"; fi',
    'if command -v flare >/dev/null 2>&1; then exec flare "$@"; fi',
    ...(cliPath === undefined ? [] : [`CLI=${quote(cliPath)}`, 'if [ -f "$CLI" ] && command -v node >/dev/null 2>&1; then exec node "$CLI" "$@"; fi']),
    'if command -v npx >/dev/null 2>&1 && npx --no-install flare --version >/dev/null 2>&1; then exec npx --no-install flare "$@"; fi',
    'echo "E_CLI_NOT_FOUND: the flare command was not found (not on PATH, not in FLARE_CLI, not installed for npx)." >&2',
    'echo "Install it with: npm install -g @flare/cli   (from a FLARE-TS checkout: npm ci && npm run build && npm link -w @flare/cli)" >&2',
    "echo 'or set FLARE_CLI to the command that runs it, e.g. FLARE_CLI=\"node /path/to/flare-ts/packages/cli/dist/bin.js\"' >&2",
    'exit 127',
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
    'authorization.json, privacy.json, resources.json, components.json and log_config.json are read as the',
    "site's own unsigned overrides; any other new file in a signed folder stops the participant.",
    'local/components.json.default lists the components jobs may use here; it is empty unless the project',
    'provisioner filled it: list the components this site trusts in local/components.json.',
    '',
  ].join('\n');
}
