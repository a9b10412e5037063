import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { resolve } from 'node:path';
import { FlareError, PkiError, parseStrictJson, type Identity, type KitLocalOverride } from '@flare/core';
import { z } from 'zod';
import { CRL_FILE, CUSTOM_CA_FILE, certFileNames } from './kit-content.js';
import { verifyKitContents, type KitVerification } from './kit-signature.js';
import { keysMatch } from './keys.js';
import type { ConnectionSecurity, ParticipantType } from './project.js';
import { verifyCertificate } from './verify-certificate.js';

const security = z.string().transform((s, ctx) => {
  const v = s.trim().toLowerCase();
  if (v === 'clear' || v === 'tls' || v === 'mtls') return v as ConnectionSecurity;
  ctx.addIssue({ code: 'custom', message: `connection_security '${s}' is not clear, tls or mtls` });
  return z.NEVER;
});
const port = z.number().int().min(1).max(65535);
const target = z.string().regex(/^[^:\s]+:\d{1,5}$/);

const serverConfigSchema = z.looseObject({
  format_version: z.number(),
  servers: z
    .array(
      z.looseObject({
        name: z.string().min(1),
        identity: z.string().min(1),
        service: z.looseObject({ target, scheme: z.string() }),
        admin_port: port,
        fed_learn_port: port,
        host_names: z.array(z.string()).min(1),
        connection_security: security,
      }),
    )
    .length(1),
});
const clientSection = z.looseObject({ fqsn: z.string().min(1), connection_security: security });
const clientConfigSchema = z.looseObject({
  format_version: z.number(),
  servers: z
    .array(z.looseObject({ name: z.string().min(1), identity: z.string().min(1), service: z.looseObject({ target, scheme: z.string() }), host_names: z.array(z.string()).min(1), admin_port: port }))
    .length(1),
  client: clientSection.optional(),
  relay: clientSection.optional(),
});
const adminConfigSchema = z.looseObject({
  format_version: z.number(),
  admin: z.looseObject({
    project_name: z.string().min(1),
    username: z.string().min(1),
    server_identity: z.string().min(1),
    host: z.string().min(1),
    host_names: z.array(z.string()).min(1),
    port,
    fed_learn_port: port,
    connection_security: security,
  }),
});

/** fed_server.json as written by provisioning (FLARE's keys plus identity, host_names, fed_learn_port, crl). */
export type FedServerConfig = z.infer<typeof serverConfigSchema>;
/** fed_client.json / fed_relay.json as written by provisioning. */
export type FedClientConfig = z.infer<typeof clientConfigSchema>;
/** fed_admin.json as written by provisioning. */
export type FedAdminConfig = z.infer<typeof adminConfigSchema>;

/** A verified startup kit, typed for the transport and the runtime. */
export interface Kit {
  readonly dir: string;
  /** Project name (from the configuration file). */
  readonly project: string;
  /** Who this kit is, as its verified certificate says. */
  readonly participant: Identity;
  readonly rootCaPem: string;
  readonly certPem: string;
  readonly privateKey: KeyObject;
  /** The same key as PKCS#8 PEM, for APIs that take PEM only (node:tls `key`). Never log it. */
  readonly privateKeyPem: string;
  /** The project CRL the kit carries (its signature was checked against the root). */
  readonly crlPem?: string;
  readonly connectionSecurity: ConnectionSecurity;
  /** The custom CA for TLS through a proxy (FLARE's custom_ca_cert), when the project names one. */
  readonly customCaPem?: string;
  readonly server: {
    /** The server's participant name (its certificate CN). */
    readonly name: string;
    /** default_host first, then host_names; for clients the connect_to host when set. */
    readonly hosts: readonly string[];
    /** fed_learn_port (for clients: the connect_to port when set). */
    readonly port: number;
    readonly adminPort: number;
  };
  /** The parsed fed_server.json / fed_client.json / fed_admin.json / fed_relay.json. */
  readonly config: FedServerConfig | FedClientConfig | FedAdminConfig;
  /** How the kit's signatures were checked. */
  readonly verification: KitVerification;
  /**
   * The bytes of every kit file as verified (kit-relative paths such as `local/privacy.json.sample`), signed
   * files and accepted local overrides alike. Read kit files from here, never from disk again: a file changed
   * after loadKit checked it would otherwise be used unchecked.
   */
  readonly files: ReadonlyMap<string, Uint8Array>;
}

/** Options of {@link loadKit}. */
export interface LoadKitOptions {
  /** Pin the project root instead of trusting the kit's own startup/rootCA.pem. */
  readonly rootCaPem?: string;
  /** Time for certificate validity (default: now). */
  readonly at?: Date;
  /**
   * Site overrides allowed only when at least as strict as the signed default, each decided by the package
   * that owns the file (e.g. @flare/cc-attest's `attestationPolicyOverride`). Without a rule for it, such a
   * file in local/ is refused (E_KIT_UNSIGNED).
   */
  readonly strictOverrides?: readonly KitLocalOverride[];
}

const CONFIGS: ReadonlyArray<readonly [string, ParticipantType]> = [
  ['fed_server.json', 'server'],
  ['fed_client.json', 'client'],
  ['fed_admin.json', 'admin'],
  ['fed_relay.json', 'relay'],
];

/**
 * Verifies a startup kit's signatures first (a tampered, unsigned or missing file is refused with its name),
 * then its certificate (chain to the root, validity, revocation by the kit's CRL, type) and that its key
 * matches, and returns a typed view. Site overrides in local/ (authorization.json, ...) are accepted unsigned.
 *
 * @throws PkiError E_KIT_* for the kit, E_CERT_* for its certificate, E_CRL_INVALID for its CRL.
 * @example
 * ```ts
 * const kit = await loadKit('workspace/example_project/prod_00/site-1');
 * const tlsOptions = { key: kit.privateKeyPem, cert: kit.certPem, ca: kit.rootCaPem };
 * ```
 */
export async function loadKit(dir: string, options: LoadKitOptions = {}): Promise<Kit> {
  const top = resolve(dir);
  const { verification, files } = await verifyKitContents(top, { ...options, localOverrides: true });
  // Everything below reads the verified bytes: nothing is read from disk a second time.
  const present = CONFIGS.filter(([file]) => files.has(`startup/${file}`));
  if (present.length !== 1) throw new PkiError('E_KIT_INVALID', `${top}/startup must hold exactly one of ${CONFIGS.map((c) => c[0]).join(', ')} (found ${present.length})`);
  const [configFile, type] = present[0]!;
  if (verification.type !== type) throw new PkiError('E_KIT_MIXED', `startup/${configFile} is a ${type} configuration but the kit's manifest names ${verification.type} '${verification.participant}'`);
  const names = certFileNames(type);
  const decoder = new TextDecoder();
  const optional = (file: string): string | undefined => {
    const bytes = files.get(`startup/${file}`);
    return bytes === undefined ? undefined : decoder.decode(bytes);
  };
  const read = (file: string): string => {
    const text = optional(file);
    if (text === undefined) throw new PkiError('E_KIT_INVALID', `startup/${file} is missing from ${top}`);
    return text;
  };
  const rootCaPem = options.rootCaPem ?? read('rootCA.pem');
  const certPem = read(names.cert);
  const keyPem = read(names.key);
  const crlPem = optional(CRL_FILE);
  const customCaPem = optional(CUSTOM_CA_FILE);

  const id = verifyCertificate(certPem, {
    rootCaPem,
    expectedType: type,
    ...(crlPem === undefined ? {} : { crl: crlPem }),
    ...(options.at === undefined ? {} : { at: options.at }),
  });
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (e) {
    throw new PkiError('E_KIT_INVALID', `startup/${names.key} is not a readable private key`, { cause: e });
  }
  if (!keysMatch(privateKey, createPublicKey(certPem))) throw new PkiError('E_KIT_INVALID', `startup/${names.key} is not the key of startup/${names.cert}`);

  const raw = read(configFile);
  let json: unknown;
  try {
    json = parseStrictJson(raw);
  } catch (e) {
    throw new PkiError('E_KIT_INVALID', `startup/${configFile} is not valid JSON${e instanceof FlareError ? ` (${e.code})` : ''}`, { cause: e });
  }
  const bad = (error: z.ZodError): never => {
    const issue = error.issues[0];
    throw new PkiError('E_KIT_INVALID', `startup/${configFile}: ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`);
  };
  const mismatch = (what: string, value: string): never => {
    throw new PkiError('E_KIT_INVALID', `startup/${configFile} names ${what} '${value}' but the certificate is for '${id.name}'`);
  };
  const splitTarget = (t: string): { host: string; port: number } => {
    const i = t.lastIndexOf(':');
    return { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
  };

  if (verification.participant !== id.name) throw new PkiError('E_KIT_INVALID', `the kit manifest names '${verification.participant}' but the certificate is for '${id.name}'`);
  const base = {
    dir: top,
    participant: { name: id.name, type: id.type, org: id.org, ...(id.role === undefined ? {} : { role: id.role }) },
    rootCaPem,
    certPem,
    privateKey,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    ...(crlPem === undefined ? {} : { crlPem }),
    ...(customCaPem === undefined ? {} : { customCaPem }),
    verification,
    files,
  };
  if (type === 'server') {
    const r = serverConfigSchema.safeParse(json);
    if (!r.success) return bad(r.error);
    const s = r.data.servers[0]!;
    if (s.identity !== id.name) mismatch('server identity', s.identity);
    return { ...base, project: s.name, connectionSecurity: s.connection_security, server: { name: s.identity, hosts: s.host_names, port: s.fed_learn_port, adminPort: s.admin_port }, config: r.data };
  }
  if (type === 'admin') {
    const r = adminConfigSchema.safeParse(json);
    if (!r.success) return bad(r.error);
    const a = r.data.admin;
    if (a.username !== id.name) mismatch('username', a.username);
    return { ...base, project: a.project_name, connectionSecurity: a.connection_security, server: { name: a.server_identity, hosts: a.host_names, port: a.fed_learn_port, adminPort: a.port }, config: r.data };
  }
  const r = clientConfigSchema.safeParse(json);
  if (!r.success) return bad(r.error);
  const section = type === 'relay' ? r.data.relay : r.data.client;
  if (!section) throw new PkiError('E_KIT_INVALID', `startup/${configFile} has no '${type}' section`);
  const leaf = section.fqsn.split('.').at(-1)!;
  if (leaf !== id.name) mismatch('fqsn', section.fqsn);
  const s = r.data.servers[0]!;
  const t = splitTarget(s.service.target);
  const hosts = [t.host, ...s.host_names.filter((h) => h !== t.host)];
  return { ...base, project: s.name, connectionSecurity: section.connection_security, server: { name: s.identity, hosts, port: t.port, adminPort: s.admin_port }, config: r.data };
}
