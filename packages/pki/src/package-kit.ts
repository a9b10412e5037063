import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PkiError, type JsonValue } from '@flare/core';
import { parseCertificate } from './identity.js';
import { x509 } from './x509.js';
import { kitFiles } from './kit-content.js';
import type { ComponentAllowList } from './kit-templates.js';
import { signKitFiles } from './kit-signature.js';
import { keysMatch, privateKeyPem } from './keys.js';
import { isValidHost, type ConnectionSecurity, type Participant, type Project } from './project.js';
import { verifyCertificate } from './verify-certificate.js';

/** Options of {@link packageKit}. */
export interface PackageKitOptions {
  /** The participant's certificate (from `flare cert approve`). */
  readonly certPem: string;
  /** The participant's private key (it never left the site). */
  readonly privateKey: KeyObject | string;
  readonly rootCaPem: string;
  /** Where to write the kit; must not exist or be empty. */
  readonly outDir: string;
  /**
   * The server to connect to (clients, relays, admins): host and port; for a server kit, the port it listens on
   * (its hosts come from its certificate). Default port 8002.
   */
  readonly server?: { readonly host?: string; readonly port?: number; readonly adminPort?: number; readonly name?: string };
  /** Project name written to the configuration (default: the root CA's common name). */
  readonly project?: string;
  readonly connectionSecurity?: ConnectionSecurity;
  /** FLARE's service scheme (default grpc). */
  readonly scheme?: string;
  readonly crlPem?: string;
  readonly customCaPem?: string;
  /** The content of local/components.json.default (default: an empty allow-list). */
  readonly components?: ComponentAllowList;
  readonly now?: Date;
}

/**
 * Assembles and signs a startup kit at the site from its own key, its approved certificate and the project
 * root (distributed provisioning, step 3). The kit is signed with the participant's key, whose certificate
 * chains to the root; `verifyKit` reports `signer: 'participant'` for it.
 *
 * @throws PkiError E_CERT_* when the certificate does not verify, E_KIT_INVALID when the key does not match or
 *   the folder is not empty.
 * @example
 * ```ts
 * await packageKit({ certPem, privateKey: keyPem, rootCaPem, outDir: 'site-3', server: { host: 'fl.example.com', port: 8002 } });
 * ```
 */
export async function packageKit(options: PackageKitOptions): Promise<{ dir: string; participant: Participant }> {
  const id = verifyCertificate(options.certPem, { rootCaPem: options.rootCaPem, ...(options.now === undefined ? {} : { at: options.now }) });
  const key = typeof options.privateKey === 'string' ? createPrivateKey(options.privateKey) : options.privateKey;
  if (!keysMatch(key, createPublicKey(options.certPem))) throw new PkiError('E_KIT_INVALID', `the private key is not the key of ${id.type} '${id.name}''s certificate`);
  const outDir = resolve(options.outDir);
  const existing = await readdir(outDir).catch(() => []);
  if (existing.length > 0) throw new PkiError('E_KIT_INVALID', `${outDir} already holds files: package into a new folder`);

  const { cert } = parseCertificate(options.certPem);
  const sanHosts = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => n.value).filter(isValidHost) ?? [];
  const rootCn = parseCertificate(options.rootCaPem, 'root CA certificate').cert.subjectName.getField('2.5.4.3')[0] ?? 'project';
  const security = options.connectionSecurity ?? 'mtls';
  const port = options.server?.port ?? 8002;
  const adminPort = options.server?.adminPort ?? port;
  let server: Participant;
  let participant: Participant;
  const props: Record<string, JsonValue> = {};
  if (id.type === 'server') {
    server = participant = { name: id.name, type: 'server', org: id.org, connectionSecurity: security, fedLearnPort: port, adminPort, defaultHost: sanHosts[0] ?? id.name, hostNames: sanHosts.slice(1), props };
  } else {
    const host = options.server?.host;
    if (host === undefined || !isValidHost(host)) throw new RangeError(`a ${id.type} kit needs "server.host" (a host name or IP address of the server)`);
    server = { name: options.server?.name ?? host, type: 'server', org: id.org, connectionSecurity: security, fedLearnPort: port, adminPort, defaultHost: host, hostNames: [], props };
    participant = {
      name: id.name,
      type: id.type,
      org: id.org,
      ...(id.role === undefined ? {} : { role: id.role }),
      connectionSecurity: security,
      ...(id.type === 'relay' || sanHosts.length > 1 ? { listeningHosts: sanHosts.filter((h) => h !== id.name) } : {}),
      props,
    };
  }
  if (options.customCaPem !== undefined) (participant as { customCaCert?: string }).customCaCert = 'customRootCA.pem';
  const project: Project = {
    apiVersion: 3,
    name: options.project ?? rootCn,
    rootCommonName: rootCn,
    description: '',
    connectionSecurity: security,
    participants: id.type === 'server' ? [server] : [server, participant],
    server,
    builders: [],
    scheme: options.scheme ?? 'grpc',
    rootValidDays: 360,
    notices: [],
    source: '<package>',
  };
  const { files, folders } = kitFiles(project, participant, {
    certPem: options.certPem,
    keyPem: privateKeyPem(key),
    rootCaPem: options.rootCaPem,
    ...(options.crlPem === undefined ? {} : { crlPem: options.crlPem }),
    ...(options.customCaPem === undefined ? {} : { customCaPem: options.customCaPem }),
    ...(options.components === undefined ? {} : { components: options.components }),
  });
  const signatures = signKitFiles(files, folders, key, { project: project.name, participant: participant.name, type: participant.type, ...(options.now === undefined ? {} : { now: options.now }) });
  await mkdir(outDir, { recursive: true, mode: 0o755 });
  for (const f of folders) await mkdir(join(outDir, f), { recursive: true });
  for (const [rel, file] of [...files, ...signatures]) {
    const path = join(outDir, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, file.bytes, { mode: file.mode });
    await chmod(path, file.mode);
  }
  return { dir: outDir, participant };
}
