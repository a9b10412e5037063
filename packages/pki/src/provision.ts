import { randomBytes, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PkiError, writeFileAtomic, type JsonValue, type KitBuildContext, type KitBuilder, type KitParticipant } from '@flare/core';
import { createCaState, hasCaState, openCa, refreshCrl, saveCa, STATE_DIR, storedParticipants, storeParticipants, type IssuedRecord, type OpenCa } from './ca-state.js';
import { createRootCa, DEFAULT_VALID_DAYS, issueWithNewKey } from './certificate.js';
import { mapLimit } from './concurrency.js';
import { fingerprintOf, normalizeSerial, parseCertificate } from './identity.js';
import { certFileNames, kitFiles } from './kit-content.js';
import { signKitFiles, type KitFile } from './kit-signature.js';
import { assertKeyType, DEFAULT_KEY_TYPE, keysMatch, loadPrivateKey, privateKeyPem, type KeyType } from './keys.js';
import { isBuiltinBuilder, type Participant, type Project } from './project.js';
import { componentAllowList, type ComponentAllowList } from './kit-templates.js';

/** Options of {@link provision}. */
export interface ProvisionOptions {
  /** The workspace folder; kits go to `<workspace>/<project>/prod_NN/<participant>/`. */
  readonly workspace: string;
  /** Key type of a new root and of newly issued participant keys (default ecdsa-p256). */
  readonly keyType?: KeyType;
  /** Kit builders contributed by other packages (HE keys, attestation policy), run before kits are signed. */
  readonly builders?: readonly KitBuilder[];
  /** Provisioning time (default: now). Inject it in tests. */
  readonly now?: Date;
  /** Encrypts the root key at rest (the CLI passes FLARE_CA_PASSPHRASE); required to open an encrypted state. */
  readonly passphrase?: string;
  /** Create a new root even though kits or a state exist (the old state is kept aside as state.replaced-*). */
  readonly newRoot?: boolean;
  /** Participants to add to an existing project (`--add`): needs the CA state; never re-issues the others. */
  readonly add?: readonly Participant[];
  /** Validity of newly issued participant certificates in days (default 360, never past the root). */
  readonly validDays?: number;
  /**
   * The component allow-list written to every server and client kit as local/components.json.default
   * (@flare/policy's format). Default: empty (no component admitted until the site lists some).
   */
  readonly components?: ComponentAllowList;
  /**
   * Give a new certificate to a participant whose certificates were all revoked but which is still in the
   * project file (default false: refused with E_PROVISION_REVOKED, since re-admitting a revoked participant
   * must be a decision, not a side effect of re-provisioning). Remove it from project.yml to keep it out.
   */
  readonly reissueRevoked?: boolean;
  /**
   * The `flare` command's entry script (an absolute path to the CLI's bin.js) that the kits' start.sh and
   * fl_admin.sh try after `flare` on PATH, so kits made by a CLI run from a repository checkout start without
   * a global install. The CLI passes its own; omitted, the scripts look on PATH and through npx only.
   */
  readonly cliPath?: string;
}

/** One kit written by {@link provision}. */
export interface ProvisionedKit {
  readonly name: string;
  readonly type: Participant['type'];
  readonly org: string;
  /** The kit folder. */
  readonly dir: string;
  /** True when the existing certificate and key were carried over; false when newly issued. */
  readonly reused: boolean;
  readonly fingerprint: string;
}

/** What {@link provision} did. */
export interface ProvisionResult {
  readonly projectDir: string;
  /** The new `prod_NN` folder holding every kit. */
  readonly prodDir: string;
  readonly stateDir: string;
  readonly kits: readonly ProvisionedKit[];
  readonly rootCreated: boolean;
  readonly keyType: KeyType;
  /** Ignored builders, re-issued certificates, truncated names, plaintext root key: one line each. */
  readonly notices: readonly string[];
}

const REUSE_MARGIN_MS = 86_400_000;

/**
 * Provisions a project into signed startup kits: opens (or creates) the CA state, reuses every still-valid
 * certificate whose key is in an earlier kit, issues the rest, writes the CRL, runs the kit builders, signs
 * every kit folder with the root key and moves the finished `prod_NN` into place (nothing partial is left on
 * failure).
 *
 * @throws PkiError E_CA_STATE_MISSING, E_CA_STATE_UNREADABLE, E_CA_PASSPHRASE, E_PROVISION_CONFLICT,
 *   E_PROVISION_REVOKED, E_PROVISION_BUILDER, E_PROJECT_INVALID (custom_ca_cert unreadable).
 * @example
 * ```ts
 * const result = await provision(await loadProject('project.yml'), { workspace: 'workspace' });
 * console.log(`kits in ${result.prodDir}`);
 * ```
 */
export async function provision(project: Project, options: ProvisionOptions): Promise<ProvisionResult> {
  if (options.keyType !== undefined) assertKeyType(options.keyType);
  componentAllowList(options.components); // RangeError now, before any state is touched
  const now = options.now ?? new Date();
  const notices = [...project.notices];
  const projectDir = resolve(options.workspace, project.name);
  await mkdir(projectDir, { recursive: true });
  const prods = await listProds(projectDir);

  // 1. The CA: reuse the state, or create a root only where that cannot silently invalidate existing kits.
  let ca: OpenCa | undefined;
  let rootCreated = false;
  if (await hasCaState(projectDir)) {
    try {
      ca = await openCa(projectDir, options.passphrase, project.name);
    } catch (e) {
      if (!options.newRoot || options.add !== undefined) throw e;
    }
    if (ca && options.newRoot) ca = undefined;
    if (!ca) await rename(join(projectDir, STATE_DIR), join(projectDir, `${STATE_DIR}.replaced-${now.toISOString().replace(/[:.]/g, '-')}`));
  } else if (options.add !== undefined) {
    throw new PkiError('E_CA_STATE_MISSING', `--add needs the CA state of '${project.name}' in ${join(projectDir, STATE_DIR)}, which is missing`);
  } else if (prods.length > 0 && !options.newRoot) {
    throw new PkiError('E_CA_STATE_MISSING', `${projectDir} has kits (${prods.map((p) => p.name).join(', ')}) but no CA state: a new root would invalidate them`);
  }
  const keyType = options.keyType ?? (ca?.data.keyType as KeyType | undefined) ?? DEFAULT_KEY_TYPE;
  if (!ca) {
    const root = await createRootCa({ commonName: project.rootCommonName, keyType, validDays: project.rootValidDays, now });
    ca = await createCaState(projectDir, project.name, keyType, root, options.passphrase, now);
    rootCreated = true;
  } else if (options.passphrase !== undefined && options.passphrase !== '' && !ca.data.encrypted) {
    notices.push('the root key was stored in plaintext: it is now encrypted with the given passphrase');
    (ca as { passphrase: string | undefined }).passphrase = options.passphrase;
  }
  if (!ca.data.encrypted && (options.passphrase === undefined || options.passphrase === '')) {
    notices.push(`the root key in ${ca.dir} is not encrypted (mode 0600): set FLARE_CA_PASSPHRASE to encrypt it at rest`);
  }

  // 2. Who gets a kit: the project file, plus participants added earlier with --add, plus this run's --add.
  const participants = mergeParticipants(project, ca, options.add ?? []);
  const full: Project = { ...project, participants };
  const revokedAgain = participants.filter((p) => {
    const earlier = ca!.data.issued.filter((r) => r.name === p.name);
    return earlier.length > 0 && earlier.every((r) => r.revoked !== undefined);
  });
  if (revokedAgain.length > 0 && options.reissueRevoked !== true) {
    const names = revokedAgain.map((p) => `'${p.name}'`).join(', ');
    throw new PkiError('E_PROVISION_REVOKED', `${names} ${revokedAgain.length === 1 ? 'was' : 'were'} revoked and ${revokedAgain.length === 1 ? 'is' : 'are'} still in ${project.source}: remove ${revokedAgain.length === 1 ? 'it' : 'them'} from the project file to keep ${revokedAgain.length === 1 ? 'it' : 'them'} out, or run with --reissue-revoked to issue new certificates`);
  }

  // 3. Certificates: carry over what is still good, issue the rest.
  const rootPem = ca.root.certPem;
  const material = await mapLimit(participants, 8, async (p) => {
    const hosts = sanHosts(p);
    const carried = await carryOver(ca!, prods, p, hosts, now, rootPem);
    if (carried) return { p, ...carried, reused: true };
    const issued = await issueWithNewKey(ca!.root, { name: p.name, org: p.org, type: p.type, ...(p.role === undefined ? {} : { role: p.role }) }, {
      keyType,
      hosts,
      validDays: options.validDays ?? DEFAULT_VALID_DAYS,
      now,
    });
    const { node } = parseCertificate(issued.certPem);
    const record: IssuedRecord = {
      serial: normalizeSerial(node.serialNumber),
      name: p.name,
      type: p.type,
      org: p.org,
      ...(p.role === undefined ? {} : { role: p.role }),
      hosts,
      notAfter: new Date(node.validTo).toISOString(),
      fingerprint: fingerprintOf(node),
      certPem: issued.certPem,
    };
    return { p, certPem: issued.certPem, privateKey: issued.privateKey, record, reused: false };
  });
  for (const m of material) {
    if (m.reused) continue;
    const earlier = ca.data.issued.filter((r) => r.name === m.p.name);
    if (earlier.some((r) => r.revoked === undefined) && prods.length > 0) {
      notices.push(`issued a new certificate for '${m.p.name}' (its previous certificate or key could not be carried over; the old certificate stays valid until revoked)`);
    } else if (earlier.length > 0 && earlier.every((r) => r.revoked !== undefined)) {
      notices.push(`'${m.p.name}' was revoked and got a new certificate, as --reissue-revoked asked: it can log in again`);
    }
  }

  // 4. The CRL travels in every kit.
  const crlPem = await refreshCrl(ca, now);

  // 5. Kit contents in memory, then the contributed builders.
  const customCas = new Map<string, string>();
  const kits = new Map<string, { files: Map<string, KitFile>; folders: string[] }>();
  for (const m of material) {
    let customCaPem: string | undefined;
    if (m.p.customCaCert !== undefined) {
      customCaPem = customCas.get(m.p.customCaCert) ?? (await readCustomCa(m.p.customCaCert, m.p.name));
      customCas.set(m.p.customCaCert, customCaPem);
    }
    kits.set(
      m.p.name,
      kitFiles(full, m.p, {
        certPem: m.certPem,
        keyPem: privateKeyPem(m.privateKey),
        rootCaPem: rootPem,
        crlPem,
        ...(customCaPem === undefined ? {} : { customCaPem }),
        ...(options.components === undefined ? {} : { components: options.components }),
        ...(options.cliPath === undefined ? {} : { cliPath: options.cliPath }),
      }),
    );
  }
  await runBuilders(full, options.builders ?? [], kits, ca.dir, notices);

  // 6. Sign and write into a staging folder, record the state, then move the finished prod_NN into place.
  const prodName = `prod_${String((prods.at(-1)?.n ?? -1) + 1).padStart(2, '0')}`;
  const prodDir = join(projectDir, prodName);
  const staging = join(projectDir, `.${prodName}.partial-${randomBytes(4).toString('hex')}`);
  try {
    // prod_NN holds every participant's private key until the kits are handed out: owner-only, like state/.
    await mkdir(staging, { mode: 0o700 });
    await chmod(staging, 0o700);
    await mapLimit([...kits], 16, async ([name, kit]) => {
      const type = participants.find((p) => p.name === name)!.type;
      const signatures = signKitFiles(kit.files, kit.folders, ca!.root.privateKey, { project: project.name, participant: name, type, now });
      await writeKit(join(staging, name), kit.folders, new Map([...kit.files, ...signatures]));
    });
    for (const m of material) if (!m.reused) ca.data.issued.push(m.record);
    storeParticipants(ca, participants.filter((p) => !project.participants.some((q) => q.name === p.name)));
    await saveCa(ca);
    await rename(staging, prodDir);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  return {
    projectDir,
    prodDir,
    stateDir: ca.dir,
    kits: material.map((m) => ({ name: m.p.name, type: m.p.type, org: m.p.org, dir: join(prodDir, m.p.name), reused: m.reused, fingerprint: m.record.fingerprint })),
    rootCreated,
    keyType,
    notices,
  };
}

/** The hosts a participant's certificate names (SAN): FLARE's rules, see issueCertificate. */
function sanHosts(p: Participant): string[] {
  if (p.type === 'server') return [...new Set([p.defaultHost ?? p.name, ...(p.hostNames ?? [])])];
  if (p.type === 'admin') return [];
  return [...new Set([p.name, ...(p.listeningHosts ?? [])])];
}

async function listProds(projectDir: string): Promise<{ name: string; n: number }[]> {
  const entries = await readdir(projectDir, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory() && /^prod_\d+$/.test(e.name))
    .map((e) => ({ name: e.name, n: Number(e.name.slice(5)) }))
    .sort((a, b) => a.n - b.n);
}

function mergeParticipants(project: Project, ca: OpenCa, add: readonly Participant[]): Participant[] {
  const byName = new Map<string, Participant>();
  for (const p of project.participants) byName.set(p.name, p);
  // Earlier additions (never their server: the project file names the one server).
  for (const p of storedParticipants(ca)) if (!byName.has(p.name) && p.type !== 'server') byName.set(p.name, p);
  for (const p of add) {
    if (p.type === 'server') throw new PkiError('E_PROVISION_CONFLICT', `cannot add server '${p.name}': the project already has server '${project.server.name}'`);
    if (byName.has(p.name)) throw new PkiError('E_PROVISION_CONFLICT', `cannot add '${p.name}': the project already has a participant of that name`);
    byName.set(p.name, p);
  }
  return [...byName.values()];
}

/** The latest still-valid certificate of this participant with the same identity, and its key from an earlier kit. */
async function carryOver(
  ca: OpenCa,
  prods: readonly { name: string }[],
  p: Participant,
  hosts: readonly string[],
  now: Date,
  rootPem: string,
): Promise<{ certPem: string; privateKey: KeyObject; record: IssuedRecord } | undefined> {
  const record = [...ca.data.issued]
    .reverse()
    .find((r) => r.name === p.name && r.revoked === undefined && r.type === p.type && r.org === p.org && r.role === p.role && sameList(r.hosts, hosts));
  if (!record || new Date(record.notAfter).getTime() - REUSE_MARGIN_MS < now.getTime()) return undefined;
  const cert = new NodeX509(record.certPem);
  if (!cert.checkIssued(new NodeX509(rootPem))) return undefined;
  const names = certFileNames(p.type);
  for (const prod of [...prods].reverse()) {
    const kitDir = join(dirname(ca.dir), prod.name, p.name, 'startup');
    const certPem = await readFile(join(kitDir, names.cert), 'utf8').catch(() => undefined);
    if (certPem === undefined || certPem !== record.certPem) continue;
    try {
      const privateKey = loadPrivateKey(await readFile(join(kitDir, names.key)));
      if (keysMatch(privateKey, cert.publicKey)) return { certPem: record.certPem, privateKey, record };
    } catch {
      continue;
    }
  }
  return undefined;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function readCustomCa(path: string, who: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
    new NodeX509(pem);
  } catch (e) {
    throw new PkiError('E_PROJECT_INVALID', `participant '${who}', field 'custom_ca_cert': ${path} is not a readable PEM certificate; expected the path of a CA certificate`, { cause: e });
  }
  return pem;
}

const SAFE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._@+-]*$/;
const RESERVED = new Set(['signature.json']);

async function runBuilders(project: Project, builders: readonly KitBuilder[], kits: Map<string, { files: Map<string, KitFile>; folders: string[] }>, stateDir: string, notices: string[]): Promise<void> {
  const matched = new Set<string>();
  for (const b of builders) for (const m of b.matches) matched.add(m);
  for (const entry of project.builders) {
    if (isBuiltinBuilder(entry.path) || matched.has(entry.path)) continue;
    notices.push(`builder '${entry.path}' is a Python class with no FLARE-TS kit builder registered: ignored${project.he && entry.path.endsWith('.HEBuilder') ? ' (its parameters are read into project.he)' : ''}`);
  }
  const participants: KitParticipant[] = project.participants.map((p) => ({ name: p.name, type: p.type, org: p.org, props: p.props }));
  for (const builder of builders) {
    const entry = project.builders.find((e) => builder.matches.includes(e.path));
    const base = join(stateDir, 'builders', checkSegment(builder.name, 'builder name'));
    const ctx: KitBuildContext = {
      project: { name: project.name, participants },
      args: entry === undefined ? undefined : ((entry.args ?? {}) as Readonly<Record<string, JsonValue>>),
      state: {
        async read(file: string): Promise<Uint8Array | undefined> {
          const bytes = await readFile(join(base, checkSegment(file, 'state file name'))).catch(() => undefined);
          return bytes === undefined ? undefined : new Uint8Array(bytes);
        },
        async write(file: string, bytes: Uint8Array, opts?: { readonly mode?: number }): Promise<void> {
          await mkdir(base, { recursive: true, mode: 0o700 });
          await writeFileAtomic(join(base, checkSegment(file, 'state file name')), bytes, { mode: opts?.mode ?? 0o600 });
        },
      },
      addFile(participant: string, relPath: string, bytes: Uint8Array, opts?: { readonly mode?: number }): void {
        const kit = kits.get(participant);
        if (!kit) throw new RangeError(`addFile: '${participant}' is not a participant of project '${project.name}'`);
        const segments = relPath.split('/');
        segments.forEach((s) => checkSegment(s, 'kit path segment'));
        if (segments.length < 2 || RESERVED.has(segments.at(-1)!)) throw new RangeError(`addFile: '${relPath}' must be a file inside a kit folder (e.g. startup/x.bin) and not signature.json`);
        if (kit.files.has(relPath)) throw new RangeError(`addFile: ${participant}/${relPath} already exists; builders add files, they do not replace them`);
        const mode = opts?.mode ?? 0o644;
        if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new RangeError(`addFile: "mode" expected a permission mode 0-0o777, got ${mode}`);
        kit.files.set(relPath, { bytes: Uint8Array.from(bytes), mode });
        for (let i = 1; i < segments.length; i++) {
          const folder = segments.slice(0, i).join('/');
          if (!kit.folders.includes(folder)) kit.folders.push(folder);
        }
      },
    };
    try {
      await builder.build(ctx);
    } catch (e) {
      if (e instanceof RangeError || e instanceof TypeError) throw e;
      throw new PkiError('E_PROVISION_BUILDER', `kit builder '${builder.name}' failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
}

function checkSegment(s: string, what: string): string {
  if (!SAFE_SEGMENT.test(s) || s === '.' || s === '..' || s.length > 128) throw new RangeError(`${what} ${JSON.stringify(s)} is not a plain file or folder name`);
  return s;
}

/** Writes a kit's files with their modes (keys 0600), creating every folder. */
async function writeKit(dir: string, folders: readonly string[], files: ReadonlyMap<string, KitFile>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const f of folders) await mkdir(join(dir, f), { recursive: true, mode: 0o755 });
  for (const [rel, file] of files) {
    const path = join(dir, rel);
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await writeFile(path, file.bytes, { mode: file.mode });
    // The umask may have narrowed (or a reused file widened) the mode: set it exactly.
    await chmod(path, file.mode);
  }
}
