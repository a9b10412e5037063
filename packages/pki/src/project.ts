import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { PkiError, type Identity, type JsonValue, type ParticipantType } from '@flare/core';
import { LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { didYouMean, FLARE_PARTICIPANT_KEYS } from './project-keys.js';

/** The four kinds of participant a project has (FLARE's `type`). */
export type { ParticipantType } from '@flare/core';

/** How a participant's connections are secured (FLARE's `connection_security`). */
export type ConnectionSecurity = 'clear' | 'tls' | 'mtls';

/** A client's or relay's `connect_to`: where it connects instead of the server's default host. */
export interface ConnectTo {
  readonly name?: string;
  readonly host?: string;
  readonly port?: number;
  readonly connectionSecurity?: ConnectionSecurity;
}

/** A client's `capacity` (FLARE's GPU resource manager arguments). */
export interface Capacity {
  readonly numOfGpus: number;
  readonly memPerGpuInGiB: number;
}

/** One participant of a project, validated with FLARE's rules; typed views of the properties we use. */
export interface Participant extends Identity {
  /** Admins only: FLARE's role (project_admin, org_admin, lead, member, or another well-formed role). */
  readonly role?: string | undefined;
  /** Effective connection security: the participant's own, else the project's, else `mtls`. */
  readonly connectionSecurity: ConnectionSecurity;
  /** Absolute path of the custom CA certificate (participant's own, else the project's). */
  readonly customCaCert?: string;
  /** Server: the port clients connect to (FLARE default 8002). */
  readonly fedLearnPort?: number;
  /** Server: the admin port (FLARE >= 2.7 default: the fed_learn_port). */
  readonly adminPort?: number;
  /** Server: the host clients use first (default: the server name). */
  readonly defaultHost?: string;
  /** Server: extra DNS names or IP addresses (all go into the certificate's SAN). */
  readonly hostNames?: readonly string[];
  readonly connectTo?: ConnectTo;
  /** Client or relay: hosts this participant listens on (they go into its certificate's SAN). */
  readonly listeningHosts?: readonly string[];
  readonly parent?: string;
  readonly capacity?: Capacity;
  /** Every key of the participant's entry other than name, type and org, verbatim. */
  readonly props: Readonly<Record<string, JsonValue>>;
}

/** One entry of project.yml's `builders` list. */
export interface BuilderEntry {
  readonly path: string;
  readonly args: Readonly<Record<string, JsonValue>> | undefined;
}

/** HEBuilder arguments (FLARE: TenSEAL CKKS), read so HE kit builders and users can see them. */
export interface HeParameters {
  readonly polyModulusDegree: number;
  readonly coeffModBitSizes: readonly number[];
  readonly scaleBits: number;
  readonly scheme: string;
}

/** A validated project.yml. */
export interface Project {
  readonly apiVersion: 3 | 4;
  /** The project name (folder name in the workspace). */
  readonly name: string;
  /** The root CA's common name: the project name truncated to 63 characters, as FLARE does. */
  readonly rootCommonName: string;
  readonly description: string;
  /** Project-level default connection security (`mtls` when the file sets none). */
  readonly connectionSecurity: ConnectionSecurity;
  readonly customCaCert?: string;
  readonly participants: readonly Participant[];
  /** The one server. */
  readonly server: Participant;
  readonly builders: readonly BuilderEntry[];
  /** StaticFileBuilder `scheme` (FLARE default `grpc`): written to the kits' service.scheme. */
  readonly scheme: string;
  /** CertBuilder `root_valid_days` (FLARE default 360). */
  readonly rootValidDays: number;
  readonly he?: HeParameters;
  /** api_version 4 `studies`, verbatim. */
  readonly studies?: JsonValue;
  /** What was ignored or adjusted (Python builder paths, truncated name, non-standard roles), one line each. */
  readonly notices: readonly string[];
  /** The file it came from, or `<text>`. */
  readonly source: string;
}

/** Where a project file's text comes from, for messages and relative paths. */
export interface ParseProjectOptions {
  /** Named in every error (default `<text>`). */
  readonly source?: string;
  /** Folder that relative `custom_ca_cert` paths are resolved against (default: the current directory). */
  readonly baseDir?: string;
  /**
   * Participant keys read by kit builders (their `participantKeys`, e.g. `attestation_policy`), accepted in
   * addition to FLARE's. Any other key is refused with E_PROJECT_INVALID, its line and the nearest known key.
   */
  readonly participantKeys?: readonly string[];
}

/** Files larger than this are refused before parsing (FLARE project files are a few KiB). */
export const MAX_PROJECT_BYTES = 1 << 20;

// nvflare/apis/utils/format_check.py type_pattern_mapping (FLARE 2.9): the rules a FLARE user already meets.
const HOST_PATTERN = /^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const NAME_PATTERNS: Readonly<Record<ParticipantType, RegExp>> = {
  server: HOST_PATTERN,
  client: /^[A-Za-z0-9-_]+$/,
  relay: /^[A-Za-z0-9-_]+$/,
  admin: /^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}$/,
};
const NAME_LOOKS_LIKE: Readonly<Record<ParticipantType, string>> = {
  server: 'a host name of DNS labels (letters, digits, inner hyphens) separated by dots, e.g. server1.example.com',
  client: 'letters, digits, "-" and "_" only, e.g. site-1',
  relay: 'letters, digits, "-" and "_" only, e.g. relay-1',
  admin: 'an email address, e.g. admin@nvidia.com',
};
const ORG_PATTERN = /^[A-Za-z0-9_]+$/;
const ROLE_PATTERN = /^[A-Za-z0-9_]+$/;
const STANDARD_ROLES = new Set(['project_admin', 'org_admin', 'lead', 'member']);
const PARTICIPANT_TYPES = new Set(['server', 'client', 'admin', 'relay']);
/** RFC 5280 upper bound ub-common-name: 64 characters. */
export const MAX_COMMON_NAME = 64;
const KNOWN_TOP_KEYS = new Set(['api_version', 'name', 'description', 'participants', 'builders', 'packager', 'connection_security', 'custom_ca_cert', 'studies']);

// FLARE's own builders: we do their work ourselves, so their paths are understood, not ignored.
const BUILTIN_BUILDERS = new Map<string, string>([
  ['nvflare.lighter.impl.workspace.WorkspaceBuilder', 'workspace'],
  ['nvflare.lighter.impl.static_file.StaticFileBuilder', 'static'],
  ['nvflare.lighter.impl.cert.CertBuilder', 'cert'],
  ['nvflare.lighter.impl.signature.SignatureBuilder', 'signature'],
]);
/** FLARE's HEBuilder path: its args are read into {@link Project.he}. */
const HE_BUILDER_PATH = 'nvflare.lighter.impl.he.HEBuilder';

const port = z.number().int().min(1).max(65535);
const jsonObject = z.record(z.string(), z.unknown());
const builderSchema = z.object({ path: z.string().min(1), args: jsonObject.nullish() });
const heSchema = z.object({
  poly_modulus_degree: z.number().int().positive().default(8192),
  coeff_mod_bit_sizes: z.array(z.number().int().positive()).nonempty().default([60, 40, 40]),
  scale_bits: z.number().int().positive().default(40),
  scheme: z.string().default('CKKS'),
});
const capacitySchema = z.strictObject({
  num_of_gpus: z.number().int().min(0).default(0),
  mem_per_gpu_in_GiB: z.number().min(0).default(0),
});
const connectToObject = z.strictObject({
  name: z.string().optional(),
  host: z.string().optional(),
  port: port.optional(),
  connection_security: z.string().optional(),
});
const listeningObject = z.object({
  default_host: z.string().optional(),
  host_names: z.array(z.string()).optional(),
  port: port.optional(),
  scheme: z.string().optional(),
});

/**
 * Reads and validates a FLARE project.yml (api_version 3 or 4) from a path or from its text (any string with a
 * line break is taken as text). Applies FLARE's rules; every error names the file, the participant, the field
 * and its line, and says what a valid value looks like.
 *
 * @throws PkiError E_PROJECT_READ, E_PROJECT_YAML or E_PROJECT_INVALID.
 * @example
 * ```ts
 * const project = await loadProject('project.yml');
 * for (const notice of project.notices) console.warn(notice);
 * ```
 */
export async function loadProject(yamlTextOrPath: string, options: ParseProjectOptions = {}): Promise<Project> {
  if (yamlTextOrPath.includes('\n')) return parseProject(yamlTextOrPath, options);
  const { path, text } = await readProjectFile(yamlTextOrPath);
  return parseProject(text, { source: path, baseDir: dirname(path), ...options });
}

/** Reads a project-style YAML file with the size limit; shared by {@link loadProject} and additions. */
async function readProjectFile(file: string): Promise<{ path: string; text: string }> {
  const path = resolve(file);
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new PkiError('E_PROJECT_READ', `${path} is not a file`);
    if (info.size > MAX_PROJECT_BYTES) throw new PkiError('E_PROJECT_READ', `${path} is ${info.size} bytes; project files are limited to ${MAX_PROJECT_BYTES}`);
    return { path, text: await readFile(path, 'utf8') };
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError('E_PROJECT_READ', `cannot read project file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }
}

interface Ctx {
  readonly source: string;
  readonly baseDir: string;
  readonly knownKeys: ReadonlySet<string>;
  readonly doc: Document;
  readonly lines: LineCounter;
  readonly notices: string[];
}

function lineOf(ctx: Ctx, path: readonly (string | number)[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = ctx.doc.getIn(path.slice(0, n), true) as YamlNode | undefined;
    const offset = node && typeof node === 'object' && 'range' in node ? node.range?.[0] : undefined;
    if (offset !== undefined) return ctx.lines.linePos(offset).line;
  }
  return undefined;
}

function fail(ctx: Ctx, path: readonly (string | number)[], who: string | undefined, field: string, problem: string, looksLike: string): never {
  const line = lineOf(ctx, path);
  const where = `${ctx.source}${line === undefined ? '' : `:${line}`}`;
  const subject = who === undefined ? `field '${field}'` : `${who}, field '${field}'`;
  throw new PkiError('E_PROJECT_INVALID', `${where}: ${subject}: ${problem}; expected ${looksLike}`);
}

/**
 * Parses project.yml text; see {@link loadProject}. Synchronous: no file is read except to check nothing.
 *
 * @throws PkiError E_PROJECT_YAML or E_PROJECT_INVALID.
 */
export function parseProject(text: string, options: ParseProjectOptions = {}): Project {
  const source = options.source ?? '<text>';
  if (Buffer.byteLength(text) > MAX_PROJECT_BYTES) throw new PkiError('E_PROJECT_READ', `${source} is larger than ${MAX_PROJECT_BYTES} bytes`);
  const ctx = parseYaml(text, source, options.baseDir ?? process.cwd(), options.participantKeys);
  const data: unknown = ctx.doc.toJS({ maxAliasCount: 100 });
  if (data === null || typeof data !== 'object' || Array.isArray(data)) fail(ctx, [], undefined, '(top level)', 'the file is not a mapping', 'a YAML mapping with api_version, name and participants');
  const top = data as Record<string, unknown>;

  const apiVersion = top['api_version'];
  if (apiVersion !== 3 && apiVersion !== 4) fail(ctx, ['api_version'], undefined, 'api_version', `got ${JSON.stringify(apiVersion ?? null)}`, '3 or 4');
  const name = top['name'];
  if (typeof name !== 'string' || name.trim() === '') fail(ctx, ['name'], undefined, 'name', 'missing or not a string', 'the project name, e.g. example_project');
  const projectName = name.trim();
  // The name becomes a folder of the workspace: nothing that could walk out of it.
  if (/[/\\\0]/.test(projectName) || projectName === '.' || projectName === '..') {
    fail(ctx, ['name'], undefined, 'name', `'${projectName}' cannot be a folder name`, 'a name without "/", "\\" or NUL');
  }
  let rootCommonName = projectName;
  if (projectName.length > 63) {
    rootCommonName = projectName.slice(0, 63);
    ctx.notices.push(`project name is longer than 63 characters: the root CA common name is truncated to '${rootCommonName}' (as FLARE does)`);
  }
  const description = top['description'];
  if (description !== undefined && description !== null && typeof description !== 'string') fail(ctx, ['description'], undefined, 'description', 'not a string', 'a text');
  for (const key of Object.keys(top)) if (!KNOWN_TOP_KEYS.has(key)) ctx.notices.push(`${source}: top-level key '${key}' is not used by FLARE-TS and was ignored`);
  if (top['studies'] !== undefined && apiVersion === 3) ctx.notices.push(`${source}: 'studies' needs api_version 4 and was ignored`);
  if (top['packager'] !== undefined) ctx.notices.push(`${source}: packager ${describePath(top['packager'])} is a Python class FLARE-TS does not run: ignored (kits are written as folders)`);

  const projectSecurity = top['connection_security'] === undefined ? 'mtls' : connectionSecurity(ctx, ['connection_security'], undefined, top['connection_security']);
  const projectCustomCa = top['custom_ca_cert'] === undefined ? undefined : customCa(ctx, ['custom_ca_cert'], undefined, top['custom_ca_cert']);

  const list = top['participants'];
  if (!Array.isArray(list) || list.length === 0) fail(ctx, ['participants'], undefined, 'participants', 'missing or empty', 'a list of participants (one server, clients, admins)');
  const participants = parseParticipants(ctx, list, ['participants'], { connectionSecurity: projectSecurity, ...(projectCustomCa === undefined ? {} : { customCaCert: projectCustomCa }) });
  const servers = participants.filter((p) => p.type === 'server');
  if (servers.length !== 1) fail(ctx, ['participants'], undefined, 'participants', `${servers.length} servers are defined`, 'exactly one participant of type server');
  checkParents(ctx, participants);

  const { builders, scheme, rootValidDays, he } = parseBuilders(ctx, top['builders']);
  return {
    apiVersion,
    name: projectName,
    rootCommonName,
    description: typeof description === 'string' ? description : '',
    connectionSecurity: projectSecurity,
    ...(projectCustomCa === undefined ? {} : { customCaCert: projectCustomCa }),
    participants,
    server: servers[0]!,
    builders,
    scheme,
    rootValidDays,
    ...(he === undefined ? {} : { he }),
    ...(apiVersion === 4 && top['studies'] !== undefined ? { studies: top['studies'] as JsonValue } : {}),
    notices: ctx.notices,
    source,
  };
}

/**
 * Parses a file of participants to add to an existing project (`flare provision --add extra.yml`): a YAML
 * mapping with a `participants` list (other keys are ignored), validated with the same rules as project.yml.
 *
 * @throws PkiError E_PROJECT_READ, E_PROJECT_YAML or E_PROJECT_INVALID.
 */
export async function loadParticipants(yamlTextOrPath: string, project: Project, options: ParseProjectOptions = {}): Promise<Participant[]> {
  let text = yamlTextOrPath;
  let source = options.source ?? '<text>';
  let baseDir = options.baseDir ?? process.cwd();
  if (!yamlTextOrPath.includes('\n')) {
    const file = await readProjectFile(yamlTextOrPath);
    text = file.text;
    source = options.source ?? file.path;
    baseDir = options.baseDir ?? dirname(file.path);
  }
  const ctx = parseYaml(text, source, baseDir, options.participantKeys);
  const data: unknown = ctx.doc.toJS({ maxAliasCount: 100 });
  const list = data !== null && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>)['participants'] : undefined;
  if (!Array.isArray(list) || list.length === 0) fail(ctx, ['participants'], undefined, 'participants', 'missing or empty', 'a mapping with a participants list');
  const defaults: { connectionSecurity: ConnectionSecurity; customCaCert?: string } = { connectionSecurity: project.connectionSecurity };
  if (project.customCaCert !== undefined) defaults.customCaCert = project.customCaCert;
  const added = parseParticipants(ctx, list, ['participants'], defaults);
  // Name clashes with the project are reported by provision (E_PROVISION_CONFLICT); parents must exist.
  checkParents(ctx, [...project.participants, ...added], false);
  return added;
}

function parseYaml(text: string, source: string, baseDir: string, participantKeys: readonly string[] = []): Ctx {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true });
  const error = doc.errors[0];
  if (error) {
    const line = error.linePos?.[0]?.line ?? lines.linePos(error.pos[0]).line;
    throw new PkiError('E_PROJECT_YAML', `${source}:${line}: ${error.message.split('\n')[0]}`);
  }
  return { source, baseDir, knownKeys: new Set([...FLARE_PARTICIPANT_KEYS, ...participantKeys]), doc, lines, notices: [] };
}

function describePath(value: unknown): string {
  if (value !== null && typeof value === 'object' && typeof (value as { path?: unknown }).path === 'string') return `'${(value as { path: string }).path}'`;
  return '(no path)';
}

function connectionSecurity(ctx: Ctx, path: readonly (string | number)[], who: string | undefined, value: unknown): ConnectionSecurity {
  const v = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (v === 'clear' || v === 'tls' || v === 'mtls') return v;
  return fail(ctx, path, who, String(path[path.length - 1]), `got ${JSON.stringify(value)}`, 'clear, tls or mtls (case-insensitive)');
}

function customCa(ctx: Ctx, path: readonly (string | number)[], who: string | undefined, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') fail(ctx, path, who, 'custom_ca_cert', 'not a file path', 'the path of a PEM CA certificate, relative to project.yml');
  return resolve(ctx.baseDir, value.trim());
}

function hostName(ctx: Ctx, path: readonly (string | number)[], who: string, field: string, value: unknown): string {
  if (typeof value === 'string' && (HOST_PATTERN.test(value) || isIP(value) !== 0)) return value;
  return fail(ctx, path, who, field, `got ${JSON.stringify(value)}`, 'a host name (DNS labels separated by dots) or an IP address');
}

function hostList(ctx: Ctx, path: readonly (string | number)[], who: string, field: string, value: unknown): string[] {
  if (typeof value === 'string') return [hostName(ctx, path, who, field, value)];
  if (!Array.isArray(value)) return fail(ctx, path, who, field, `got ${JSON.stringify(value)}`, 'a host name or a list of host names / IP addresses');
  return value.map((v, i) => hostName(ctx, [...path, i], who, field, v));
}

function parseParticipants(
  ctx: Ctx,
  list: readonly unknown[],
  base: readonly (string | number)[],
  defaults: { readonly connectionSecurity: ConnectionSecurity; readonly customCaCert?: string },
): Participant[] {
  const out: Participant[] = [];
  const seen = new Set<string>();
  list.forEach((entry, i) => {
    const path = [...base, i];
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail(ctx, path, `participant #${i + 1}`, '(entry)', 'not a mapping', 'a mapping with name, type and org');
    const e = entry as Record<string, unknown>;
    const rawName = e['name'];
    if (typeof rawName !== 'string' || rawName === '') fail(ctx, [...path, 'name'], `participant #${i + 1}`, 'name', 'missing or not a string', 'the participant name');
    const type = e['type'];
    const who = `participant '${rawName}'${typeof type === 'string' ? ` (${type})` : ''}`;
    if (type === 'overseer') {
      ctx.notices.push(`${ctx.source}: ${who} is an overseer, which FLARE no longer uses: ignored`);
      return;
    }
    if (typeof type !== 'string' || !PARTICIPANT_TYPES.has(type)) fail(ctx, [...path, 'type'], who, 'type', `got ${JSON.stringify(type ?? null)}`, 'server, client, admin or relay');
    const ptype = type as ParticipantType;
    if (!NAME_PATTERNS[ptype].test(rawName)) fail(ctx, [...path, 'name'], who, 'name', `'${rawName}' is not a valid ${ptype} name`, NAME_LOOKS_LIKE[ptype]);
    if (rawName.length > MAX_COMMON_NAME) {
      const line = lineOf(ctx, [...path, 'name']);
      throw new PkiError('E_CERT_CN_TOO_LONG', `${ctx.source}${line === undefined ? '' : `:${line}`}: ${who}, field 'name': ${rawName.length} characters; a certificate common name holds at most ${MAX_COMMON_NAME}`);
    }
    const org = e['org'];
    if (typeof org !== 'string' || !ORG_PATTERN.test(org)) fail(ctx, [...path, 'org'], who, 'org', `got ${JSON.stringify(org ?? null)}`, 'letters, digits and "_" only (no hyphen), e.g. nvidia');
    if (seen.has(rawName)) fail(ctx, [...path, 'name'], who, 'name', `the name '${rawName}' is used by another participant`, 'names unique across all participants');
    seen.add(rawName);
    for (const key of Object.keys(e)) {
      if (ctx.knownKeys.has(key)) continue;
      const near = didYouMean(key, ctx.knownKeys);
      fail(ctx, [...path, key], who, key, `unknown key${near === undefined ? '' : ` (did you mean '${near}'?)`}`, `one of FLARE's participant keys (${[...FLARE_PARTICIPANT_KEYS].slice(0, 14).join(', ')}) or a key a registered kit builder reads`);
    }

    const props: Record<string, JsonValue> = Object.create(null) as Record<string, JsonValue>;
    for (const [k, v] of Object.entries(e)) if (k !== 'name' && k !== 'type' && k !== 'org') props[k] = v as JsonValue;
    const at = (k: string): (string | number)[] => [...path, k];
    const p: { -readonly [K in keyof Participant]?: Participant[K] } = { name: rawName, type: ptype, org, props };

    p.connectionSecurity = e['connection_security'] === undefined ? defaults.connectionSecurity : connectionSecurity(ctx, at('connection_security'), who, e['connection_security']);
    const ca = e['custom_ca_cert'] === undefined ? defaults.customCaCert : customCa(ctx, at('custom_ca_cert'), who, e['custom_ca_cert']);
    if (ca !== undefined) p.customCaCert = ca;

    if (ptype === 'admin') {
      const role = e['role'];
      if (role === undefined || role === null || role === '') fail(ctx, at('role'), who, 'role', 'an admin needs a role', 'one of project_admin, org_admin, lead, member');
      if (typeof role !== 'string' || !ROLE_PATTERN.test(role)) fail(ctx, at('role'), who, 'role', `got ${JSON.stringify(role)}`, 'letters, digits and "_" only, e.g. lead');
      if (!STANDARD_ROLES.has(role)) ctx.notices.push(`${ctx.source}: ${who} has the non-standard role '${role}': authorization.json must grant it rights explicitly`);
      p.role = role;
    }
    if (ptype === 'server') {
      const fl = e['fed_learn_port'] ?? 8002;
      const flp = port.safeParse(fl);
      if (!flp.success) fail(ctx, at('fed_learn_port'), who, 'fed_learn_port', `got ${JSON.stringify(fl)}`, 'a port number 1-65535');
      p.fedLearnPort = flp.data;
      // FLARE >= 2.7: the admin port defaults to the fed_learn_port (one port for both).
      const ad = e['admin_port'] ?? flp.data;
      const adp = port.safeParse(ad);
      if (!adp.success) fail(ctx, at('admin_port'), who, 'admin_port', `got ${JSON.stringify(ad)}`, 'a port number 1-65535');
      p.adminPort = adp.data;
      p.defaultHost = e['default_host'] === undefined ? rawName : hostName(ctx, at('default_host'), who, 'default_host', e['default_host']);
      p.hostNames = e['host_names'] === undefined || e['host_names'] === null ? [] : hostList(ctx, at('host_names'), who, 'host_names', e['host_names']);
    }
    if (ptype === 'client' || ptype === 'relay') {
      const ct = e['connect_to'];
      if (ct !== undefined && ct !== null) {
        if (typeof ct === 'string') p.connectTo = { host: hostName(ctx, at('connect_to'), who, 'connect_to', ct) };
        else {
          const r = connectToObject.safeParse(ct);
          if (!r.success) fail(ctx, at('connect_to'), who, 'connect_to', r.error.issues[0]?.message ?? 'invalid', 'a host name, or {name, host, port, connection_security}');
          const c: { -readonly [K in keyof ConnectTo]?: ConnectTo[K] } = {};
          if (r.data.name !== undefined) c.name = r.data.name;
          if (r.data.host !== undefined) c.host = hostName(ctx, [...at('connect_to'), 'host'], who, 'connect_to.host', r.data.host);
          if (r.data.port !== undefined) c.port = r.data.port;
          if (r.data.connection_security !== undefined) c.connectionSecurity = connectionSecurity(ctx, [...at('connect_to'), 'connection_security'], who, r.data.connection_security);
          p.connectTo = c;
        }
      }
      const lh = e['listening_host'];
      if (lh !== undefined && lh !== null) {
        if (typeof lh === 'string') p.listeningHosts = [hostName(ctx, at('listening_host'), who, 'listening_host', lh)];
        else {
          const r = listeningObject.safeParse(lh);
          if (!r.success) fail(ctx, at('listening_host'), who, 'listening_host', 'invalid', 'a host name, or {default_host, host_names, port}');
          const hosts = [...(r.data.default_host === undefined ? [] : [r.data.default_host]), ...(r.data.host_names ?? [])];
          p.listeningHosts = hosts.map((h) => hostName(ctx, at('listening_host'), who, 'listening_host', h));
        }
      } else if (ptype === 'relay') fail(ctx, at('listening_host'), who, 'listening_host', 'a relay needs a listening_host', 'the host name the relay listens on');
      if (e['parent'] !== undefined && e['parent'] !== null) {
        if (typeof e['parent'] !== 'string') fail(ctx, at('parent'), who, 'parent', 'not a string', 'the name of a relay');
        p.parent = e['parent'];
      }
      if (e['capacity'] !== undefined && e['capacity'] !== null) {
        const r = capacitySchema.safeParse(e['capacity']);
        if (!r.success) fail(ctx, at('capacity'), who, 'capacity', r.error.issues[0]?.message ?? 'invalid', '{num_of_gpus: integer >= 0, mem_per_gpu_in_GiB: number >= 0}');
        p.capacity = { numOfGpus: r.data.num_of_gpus, memPerGpuInGiB: r.data.mem_per_gpu_in_GiB };
      }
    }
    out.push(p as Participant);
  });
  return out;
}

function checkParents(ctx: Ctx, participants: readonly Participant[], unique = true): void {
  const names = new Map(participants.map((p) => [p.name, p] as const));
  const seen = new Set<string>();
  for (const p of participants) {
    if (unique && seen.has(p.name)) fail(ctx, ['participants'], `participant '${p.name}' (${p.type})`, 'name', `the name '${p.name}' is used by another participant`, 'names unique across all participants');
    seen.add(p.name);
    if (p.parent !== undefined && names.get(p.parent)?.type !== 'relay') {
      fail(ctx, ['participants'], `participant '${p.name}' (${p.type})`, 'parent', `'${p.parent}' is not a relay of this project`, 'the name of a relay participant');
    }
    if (p.type !== 'relay') continue;
    const mode = p.props['mode'];
    if (mode !== undefined && mode !== null && mode !== 'forward' && mode !== 'aggregate') {
      fail(ctx, ['participants'], `participant '${p.name}' (relay)`, 'mode', `got ${JSON.stringify(mode)}`, "'forward' (the default) or 'aggregate'");
    }
    // One chain, one mode: a forwarding relay carries end-to-end sessions with the server, which an aggregating
    // relay above it would end; an aggregating relay under a forwarding one would log in through it as a site.
    const parent = p.parent === undefined ? undefined : names.get(p.parent);
    if (parent !== undefined && relayMode(parent) !== relayMode(p)) {
      fail(ctx, ['participants'], `participant '${p.name}' (relay)`, 'mode', `it is '${relayMode(p)}' under '${parent.name}', which is '${relayMode(parent)}'`, 'relays of one chain in one mode');
    }
  }
}

/** A relay's mode from project.yml: `forward` (default: sessions pass through) or `aggregate` (it aggregates its sites). */
export function relayMode(p: Participant): 'forward' | 'aggregate' {
  return p.props['mode'] === 'aggregate' ? 'aggregate' : 'forward';
}

function parseBuilders(ctx: Ctx, value: unknown): { builders: BuilderEntry[]; scheme: string; rootValidDays: number; he?: HeParameters } {
  const builders: BuilderEntry[] = [];
  let scheme = 'grpc';
  let rootValidDays = 360;
  let he: HeParameters | undefined;
  if (value === undefined || value === null) return { builders, scheme, rootValidDays };
  if (!Array.isArray(value)) fail(ctx, ['builders'], undefined, 'builders', 'not a list', 'a list of {path, args}');
  value.forEach((entry, i) => {
    const r = builderSchema.safeParse(entry);
    if (!r.success) fail(ctx, ['builders', i], `builder #${i + 1}`, 'path', 'missing path', 'a mapping with path (and optional args)');
    const path = r.data.path;
    const args = r.data.args === undefined || r.data.args === null ? undefined : (r.data.args as Record<string, JsonValue>);
    builders.push({ path, args });
    const who = `builder '${path}'`;
    const kind = BUILTIN_BUILDERS.get(path);
    if (kind === 'static' && args?.['scheme'] !== undefined) {
      if (typeof args['scheme'] !== 'string' || args['scheme'] === '') fail(ctx, ['builders', i, 'args', 'scheme'], who, 'scheme', 'not a string', 'a scheme name, e.g. grpc');
      scheme = args['scheme'];
    } else if (kind === 'cert' && args?.['root_valid_days'] !== undefined) {
      const d = args['root_valid_days'];
      if (typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > 36500) fail(ctx, ['builders', i, 'args', 'root_valid_days'], who, 'root_valid_days', `got ${JSON.stringify(d)}`, 'a whole number of days between 1 and 36500');
      rootValidDays = d;
    } else if (path === HE_BUILDER_PATH) {
      const h = heSchema.safeParse(args ?? {});
      if (!h.success) {
        const issue = h.error.issues[0];
        const field = String(issue?.path[0] ?? 'args');
        fail(ctx, ['builders', i, 'args', field], who, field, issue?.message ?? 'invalid', 'poly_modulus_degree, coeff_mod_bit_sizes (list), scale_bits (integers) and scheme');
      }
      he = { polyModulusDegree: h.data.poly_modulus_degree, coeffModBitSizes: h.data.coeff_mod_bit_sizes, scaleBits: h.data.scale_bits, scheme: h.data.scheme };
    }
  });
  return { builders, scheme, rootValidDays, ...(he === undefined ? {} : { he }) };
}

/**
 * Checks a participant name, org and (admins) role with FLARE's patterns; returns a sentence on what is wrong,
 * or undefined when all are valid. Used for certificate requests, which do not come from project.yml.
 */
export function participantProblem(type: ParticipantType, name: string, org: string, role: string | undefined): string | undefined {
  if (!NAME_PATTERNS[type].test(name)) return `'${name}' is not a valid ${type} name: expected ${NAME_LOOKS_LIKE[type]}`;
  if (name.length > MAX_COMMON_NAME) return `'${name}' is longer than ${MAX_COMMON_NAME} characters`;
  if (!ORG_PATTERN.test(org)) return `org '${org}' is invalid: expected letters, digits and "_" only`;
  if (type === 'admin' && (role === undefined || !ROLE_PATTERN.test(role))) return `admin '${name}' needs a role of letters, digits and "_" (e.g. lead)`;
  if (type !== 'admin' && role !== undefined) return `only admins have a role; '${name}' is a ${type}`;
  return undefined;
}

/** True when `host` is a valid host name (FLARE's pattern) or an IP address. */
export function isValidHost(host: string): boolean {
  return HOST_PATTERN.test(host) || isIP(host) !== 0;
}

/** True for the paths of FLARE's own builders (workspace, static files, certificates, signatures), whose work provisioning does itself. */
export function isBuiltinBuilder(path: string): boolean {
  return BUILTIN_BUILDERS.has(path);
}
