import { stringify } from 'yaml';
import { parseProject, type Project } from '../project.js';

/** A participant of a test project as project.yml writes it (snake_case keys, FLARE's names), e.g. a relay's `mode`. */
export interface TestParticipant {
  readonly name: string;
  readonly type: 'server' | 'client' | 'relay' | 'admin';
  readonly org: string;
  readonly [key: string]: unknown;
}

/** What a small loopback project for a test or benchmark holds; everything but the name has a default. */
export interface TestProjectOptions {
  /** The project name. */
  readonly name: string;
  /** The server's name, also the host sites dial (default `localhost`, which its certificate covers). */
  readonly server?: string;
  /** The server's org (default `nvidia`). */
  readonly org?: string;
  /** The server's `fed_learn_port` (default 8002: pass a free port when the test starts a real server). */
  readonly port?: number;
  /** The server's `host_names` (default none; the server's name is always in its certificate). */
  readonly hostNames?: readonly string[];
  /** Client sites: a name (the server's org), or `[name, org]` (default `['site-1']`; `[]` for none). */
  readonly sites?: readonly (string | readonly [string, string])[];
  /** Admins, as `[name, org, role]`. */
  readonly admins?: readonly (readonly [string, string, string])[];
  /** Any further participants (relays, clients with extra keys), written after the sites and admins. */
  readonly participants?: readonly TestParticipant[];
  /** Top-level keys besides `api_version`, `name` and `participants` (e.g. `description`, `builders`). */
  readonly fields?: Readonly<Record<string, unknown>>;
}

/**
 * The text of a small project.yml for tests and benchmarks (api_version 3): one server on loopback, its sites,
 * admins and any other participants. One builder, so tests do not each write their own YAML.
 *
 * @example
 * ```ts
 * const yaml = testProjectYaml({ name: 'demo', port, sites: ['site-1', ['site-2', 'acme']], admins: [['admin@nvidia.com', 'nvidia', 'project_admin']] });
 * ```
 */
export function testProjectYaml(o: TestProjectOptions): string {
  const org = o.org ?? 'nvidia';
  const server: TestParticipant = {
    name: o.server ?? 'localhost',
    type: 'server',
    org,
    fed_learn_port: o.port ?? 8002,
    ...(o.hostNames === undefined ? {} : { host_names: [...o.hostNames] }),
  };
  const sites = (o.sites ?? ['site-1']).map((s): TestParticipant => (typeof s === 'string' ? { name: s, type: 'client', org } : { name: s[0], type: 'client', org: s[1] }));
  const admins = (o.admins ?? []).map(([name, aOrg, role]): TestParticipant => ({ name, type: 'admin', org: aOrg, role }));
  return stringify({ api_version: 3, name: o.name, ...o.fields, participants: [server, ...sites, ...admins, ...(o.participants ?? [])] });
}

/** {@link testProjectYaml}, parsed and validated as `flare provision` does. */
export function testProject(o: TestProjectOptions): Project {
  return parseProject(testProjectYaml(o));
}
