// Assembles the files of one participant's startup kit in memory (FLARE's layout and names). Internal.
import type { JsonValue } from '@flare/core';
import type { KitFile } from './kit-signature.js';
import { clientResources, componentAllowList, DEFAULT_AUTHORIZATION, readme, SAMPLE_PRIVACY, serverResources, startScript, type ComponentAllowList } from './kit-templates.js';
import { relayMode, type ConnectionSecurity, type Participant, type Project } from './project.js';

const enc = new TextEncoder();
const json = (v: JsonValue): Uint8Array => enc.encode(JSON.stringify(v, null, 2) + '\n');

/** The certificate and key file names FLARE uses per participant type. */
export function certFileNames(type: Participant['type']): { cert: string; key: string; config: string } {
  if (type === 'server') return { cert: 'server.crt', key: 'server.key', config: 'fed_server.json' };
  if (type === 'admin') return { cert: 'client.crt', key: 'client.key', config: 'fed_admin.json' };
  if (type === 'relay') return { cert: 'client.crt', key: 'client.key', config: 'fed_relay.json' };
  return { cert: 'client.crt', key: 'client.key', config: 'fed_client.json' };
}

/** The custom CA file name in startup/ (FLARE's custom_ca_cert, for TLS through a proxy with its own CA). */
export const CUSTOM_CA_FILE = 'customRootCA.pem';
/** The CRL file name in startup/ (FLARE has no revocation; this file is ours). */
export const CRL_FILE = 'crl.pem';

/** What a kit holds besides its configuration. */
export interface KitMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly rootCaPem: string;
  readonly crlPem?: string;
  readonly customCaPem?: string;
  /** The content of local/components.json.default (default: an empty allow-list). */
  readonly components?: ComponentAllowList;
  /** The CLI entry script start.sh tries after PATH (see ProvisionOptions.cliPath). */
  readonly cliPath?: string;
}

/** Where a client, relay or admin connects: host list (first is used), port, identity and security. */
function connectionOf(project: Project, p: Participant): { hosts: string[]; port: number; identity: string; security: ConnectionSecurity } {
  const server = project.server;
  const serverHosts = [server.defaultHost ?? server.name, ...(server.hostNames ?? [])];
  const port = p.type === 'admin' ? (server.adminPort ?? 8002) : (p.connectTo?.port ?? server.fedLearnPort ?? 8002);
  // Below an aggregating relay, the session ends at that relay: it is whom the login authenticates.
  const identity = p.connectTo?.name ?? aggregatingParent(project, p) ?? server.name;
  if (p.connectTo?.host !== undefined) {
    return { hosts: [p.connectTo.host], port, identity, security: p.connectTo.connectionSecurity ?? p.connectionSecurity };
  }
  return { hosts: [...new Set(serverHosts)], port, identity, security: p.connectTo?.connectionSecurity ?? p.connectionSecurity };
}

/** The parent of `p` when it is a relay in aggregate mode (`mode: aggregate` in project.yml). */
function aggregatingParent(project: Project, p: Participant): string | undefined {
  if (p.parent === undefined) return undefined;
  const parent = project.participants.find((x) => x.name === p.parent);
  return parent !== undefined && relayMode(parent) === 'aggregate' ? parent.name : undefined;
}

/**
 * The sites (clients) below each aggregating relay at or under `top` (`undefined`: every one in the project),
 * however deep, by relay name: whoever receives an aggregating relay's update caps its weight by them.
 */
function relayTree(project: Project, top?: string): Record<string, string[]> {
  const byName = new Map(project.participants.map((x) => [x.name, x] as const));
  const under = (p: Participant, relay: string): boolean => {
    let parent = p.parent;
    for (let i = 0; parent !== undefined && i < 16; i++) {
      if (parent === relay) return true;
      parent = byName.get(parent)?.parent;
    }
    return false;
  };
  const tree: Record<string, string[]> = {};
  for (const r of project.participants) {
    if (r.type !== 'relay' || relayMode(r) !== 'aggregate' || (top !== undefined && r.name !== top && !under(r, top))) continue;
    tree[r.name] = project.participants.filter((c) => c.type === 'client' && under(c, r.name)).map((c) => c.name).sort();
  }
  return tree;
}

/** FLARE's fully qualified site name: the relay chain from the top, then the site (e.g. relay1.site-1). */
function fqsn(project: Project, p: Participant): string {
  const byName = new Map(project.participants.map((x) => [x.name, x] as const));
  const chain = [p.name];
  let parent = p.parent;
  for (let i = 0; parent !== undefined && i < 16; i++) {
    chain.unshift(parent);
    parent = byName.get(parent)?.parent;
  }
  return chain.join('.');
}

/** The fed_server.json / fed_client.json / fed_admin.json / fed_relay.json of a participant, with FLARE's keys. */
function configOf(project: Project, p: Participant): JsonValue {
  const names = certFileNames(p.type);
  const custom = p.customCaCert === undefined ? {} : { custom_ca_cert: CUSTOM_CA_FILE };
  if (p.type === 'server') {
    const hosts = [...new Set([p.defaultHost ?? p.name, ...(p.hostNames ?? [])])];
    return {
      format_version: 2,
      servers: [
        {
          name: project.name,
          identity: p.name,
          service: { target: `${hosts[0]}:${p.fedLearnPort ?? 8002}`, scheme: project.scheme },
          admin_server: hosts[0] ?? p.name,
          admin_port: p.adminPort ?? p.fedLearnPort ?? 8002,
          fed_learn_port: p.fedLearnPort ?? 8002,
          host_names: hosts,
          ssl_private_key: names.key,
          ssl_cert: names.cert,
          ssl_root_cert: 'rootCA.pem',
          crl: CRL_FILE,
          connection_security: p.connectionSecurity,
          ...custom,
          ...(Object.keys(relayTree(project)).length === 0 ? {} : { relay_tree: relayTree(project) }),
        },
      ],
    };
  }
  const c = connectionOf(project, p);
  if (p.type === 'admin') {
    return {
      format_version: 1,
      admin: {
        project_name: project.name,
        username: p.name,
        server_identity: c.identity,
        scheme: project.scheme,
        host: c.hosts[0] ?? project.server.name,
        host_names: c.hosts,
        port: c.port,
        fed_learn_port: project.server.fedLearnPort ?? 8002,
        connection_security: c.security,
        uid_source: 'cert',
        with_file_transfer: true,
        upload_dir: 'transfer',
        download_dir: 'transfer',
        client_key: names.key,
        client_cert: names.cert,
        ca_cert: 'rootCA.pem',
        crl: CRL_FILE,
        ...custom,
      },
    };
  }
  const section = {
    ssl_private_key: names.key,
    ssl_cert: names.cert,
    ssl_root_cert: 'rootCA.pem',
    crl: CRL_FILE,
    fqsn: fqsn(project, p),
    is_leaf: p.type === 'client',
    connection_security: c.security,
    ...(p.listeningHosts === undefined ? {} : { listening_host: p.listeningHosts[0] ?? null, listening_host_names: [...p.listeningHosts] }),
    ...custom,
    ...(p.type === 'relay' ? { mode: relayMode(p), ...(relayMode(p) === 'aggregate' ? { relay_tree: relayTree(project, p.name) } : {}) } : {}),
  };
  return {
    format_version: 2,
    servers: [
      {
        name: project.name,
        service: { target: `${c.hosts[0]}:${c.port}`, scheme: project.scheme },
        identity: c.identity,
        host_names: c.hosts,
        admin_port: project.server.adminPort ?? project.server.fedLearnPort ?? 8002,
      },
    ],
    [p.type === 'relay' ? 'relay' : 'client']: section,
  };
}

/** Every file and folder of a participant's kit, before signing. */
export function kitFiles(project: Project, p: Participant, m: KitMaterial): { files: Map<string, KitFile>; folders: string[] } {
  const names = certFileNames(p.type);
  const files = new Map<string, KitFile>();
  const add = (path: string, bytes: Uint8Array | string, mode = 0o644): void => {
    files.set(path, { bytes: typeof bytes === 'string' ? enc.encode(bytes) : bytes, mode });
  };
  add('readme.txt', readme(project, p));
  add(`startup/${names.config}`, json(configOf(project, p)));
  add(`startup/${names.cert}`, m.certPem);
  add(`startup/${names.key}`, m.keyPem, 0o600);
  add('startup/rootCA.pem', m.rootCaPem);
  if (m.crlPem !== undefined) add(`startup/${CRL_FILE}`, m.crlPem);
  if (m.customCaPem !== undefined) add(`startup/${CUSTOM_CA_FILE}`, m.customCaPem);
  add(p.type === 'admin' ? 'startup/fl_admin.sh' : 'startup/start.sh', startScript(p, m.cliPath), 0o755);
  const folders = ['startup', 'transfer'];
  // An aggregating relay decides jobs under its own policy, as a site does.
  if (p.type === 'server' || p.type === 'client' || (p.type === 'relay' && relayMode(p) === 'aggregate')) {
    folders.push('local');
    add('local/authorization.json.default', json(DEFAULT_AUTHORIZATION));
    add('local/privacy.json.sample', json(SAMPLE_PRIVACY));
    add('local/resources.json.default', json(p.type === 'server' ? serverResources() : clientResources(p)));
    add('local/components.json.default', json(componentAllowList(m.components)));
  }
  return { files, folders };
}
