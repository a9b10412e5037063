import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { FlareError, PkiError, parseStrictJson, type KitLocalOverride } from '@flare/core';
import { z } from 'zod';
import { readCertificateFields } from './certificate-fields.js';
import { identityOfAttributes, parseCertificate } from './identity.js';
import { signBytes, verifyBytes } from './keys.js';
import type { ParticipantType } from './project.js';
import { verifyCertificate } from './verify-certificate.js';

/** The file in every kit folder that maps each entry to its signature (FLARE's SignatureBuilder format). */
export const SIGNATURE_FILE = 'signature.json';
const MAX_SIGNATURE_FILE = 4 << 20;
/** Larger files are refused before reading (kits hold certificates, configs and builder files of a few MB). */
const MAX_KIT_FILE = 512 << 20;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const encoder = new TextEncoder();

/** One file of a kit being assembled in memory: its bytes and file mode. */
export interface KitFile {
  readonly bytes: Uint8Array;
  readonly mode: number;
}

/**
 * The kit's signed manifest (ours, not FLARE's): whose kit it is and the SHA-256 of every file. It makes a
 * deleted file detectable (signature.json itself is unsigned) and binds each file to this one kit: a file
 * signed by the same root for another participant, or for an older kit of this one (an older crl.pem), has
 * a valid FLARE signature but not this kit's hash.
 */
const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 'flare-ts-kit/2';
const SHA256_HEX = /^[0-9a-f]{64}$/;
const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  project: z.string().min(1),
  participant: z.string().min(1),
  type: z.enum(['server', 'client', 'admin', 'relay']),
  kitSerial: z.string().regex(/^[0-9a-f]{32}$/),
  signedAt: z.iso.datetime(),
  folders: z.array(z.string()),
  files: z.record(z.string(), z.string().regex(SHA256_HEX)),
});

/** Whose kit it is, recorded in the manifest. */
export interface KitIdentity {
  readonly project: string;
  readonly participant: string;
  readonly type: ParticipantType;
  /** Unique per kit (default: 16 random bytes as hex); a file carried over from another kit is refused. */
  readonly kitSerial?: string;
  readonly now?: Date;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/**
 * Signs a kit held in memory the way FLARE's SignatureBuilder signs a folder tree: every folder gets a
 * signature.json mapping each file to base64(signature over its bytes) and each subfolder to a signature over
 * its name. `files` maps kit-relative paths (`startup/client.crt`) to contents; `folders` lists every folder
 * (`transfer` for an empty one). A signed `manifest.json` at the top names the project, participant, type and
 * a fresh kit serial and lists every folder and the SHA-256 of every file; verifyKit requires it. Returns the
 * files to add: the manifest and the signature.json files.
 */
export function signKitFiles(files: ReadonlyMap<string, KitFile>, folders: Iterable<string>, privateKey: KeyObject, identity: KitIdentity): Map<string, KitFile> {
  const maps = new Map<string, Record<string, string>>();
  const mapOf = (folder: string): Record<string, string> => {
    let m = maps.get(folder);
    if (!m) maps.set(folder, (m = {}));
    return m;
  };
  const allFolders = new Set<string>(['']);
  for (const f of folders) for (let d = f; d !== ''; d = split(d)[0]) allFolders.add(d);
  const all = new Map([...files].filter(([path]) => path !== MANIFEST_FILE && split(path)[1] !== SIGNATURE_FILE));
  for (const path of all.keys()) for (let d = split(path)[0]; d !== ''; d = split(d)[0]) allFolders.add(d);
  const manifest: z.infer<typeof manifestSchema> = {
    format: MANIFEST_FORMAT,
    project: identity.project,
    participant: identity.participant,
    type: identity.type,
    kitSerial: identity.kitSerial ?? randomBytes(16).toString('hex'),
    signedAt: (identity.now ?? new Date()).toISOString(),
    folders: [...allFolders].filter((f) => f !== '').sort(),
    files: Object.fromEntries([...all].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, file]) => [path, sha256(file.bytes)])),
  };
  manifestSchema.parse(manifest); // a malformed identity (kit serial) is a programming error: fail before signing
  const manifestFile: KitFile = { bytes: encoder.encode(JSON.stringify(manifest, null, 2) + '\n'), mode: 0o644 };
  all.set(MANIFEST_FILE, manifestFile);
  for (const folder of allFolders) {
    mapOf(folder);
    if (folder === '') continue;
    const [parent, name] = split(folder);
    mapOf(parent)[name] = signBytes(privateKey, encoder.encode(name)).toString('base64');
  }
  for (const [path, file] of all) {
    const [folder, name] = split(path);
    mapOf(folder)[name] = signBytes(privateKey, file.bytes).toString('base64');
  }
  const out = new Map<string, KitFile>([[MANIFEST_FILE, manifestFile]]);
  for (const [folder, map] of maps) {
    const sorted = Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : 1)));
    out.set(folder === '' ? SIGNATURE_FILE : `${folder}/${SIGNATURE_FILE}`, { bytes: encoder.encode(JSON.stringify(sorted, null, 2) + '\n'), mode: 0o644 });
  }
  return out;
}

function split(path: string): [string, string] {
  const i = path.lastIndexOf('/');
  return i < 0 ? ['', path] : [path.slice(0, i), path.slice(i + 1)];
}

/** Options of {@link verifyKit}. */
export interface VerifyKitOptions {
  /**
   * The root CA to trust. Default: the kit's own startup/rootCA.pem, which detects any change made after
   * signing but not a kit re-signed wholesale by another root: pin the project root where you have it.
   */
  readonly rootCaPem?: string;
  /** Time for checking a participant-signed kit's certificate (default: now). */
  readonly at?: Date;
  /**
   * Accept the site's own unsigned policy files in local/ (authorization.json, privacy.json, resources.json,
   * components.json, log_config.json: overrides of the signed .default files) and list them in the result. Default
   * false: `flare kit verify` reports them as unsigned; `loadKit` accepts them, because the site decides.
   */
  readonly localOverrides?: boolean;
  /**
   * Site overrides of signed files that are allowed only when at least as strict as the signed default
   * (e.g. @flare/cc-attest's `attestationPolicyOverride` for local/attestation_policy.json). The package that
   * owns the file decides; without a rule such a file is unsigned (E_KIT_UNSIGNED).
   */
  readonly strictOverrides?: readonly KitLocalOverride[];
}

/**
 * The site-local override files read from local/ instead of their signed `.default` versions: FLARE's four,
 * components.json (the component allow-list of @flare/policy, FLARE-TS's own), aggregation.json (the
 * server's own aggregation policy, @flare/runtime's: what a job's aggregator must do), and authentication.json
 * (a site's own login for submitters, @flare/runtime's site OIDC; it has no .default).
 */
export const LOCAL_OVERRIDE_FILES: ReadonlySet<string> = new Set(['authorization.json', 'privacy.json', 'resources.json', 'components.json', 'log_config.json', 'aggregation.json', 'authentication.json']);

/** The outcome of a successful {@link verifyKit}. */
export interface KitVerification {
  readonly dir: string;
  /** Files checked (signature.json files not counted). */
  readonly files: number;
  readonly folders: number;
  /**
   * `root`: signed by the project root (central provisioning). `participant`: signed by the participant's own
   * key, whose certificate in the kit chains to the root (distributed provisioning: the site packaged its kit).
   */
  readonly signer: 'root' | 'participant';
  /** Unsigned site overrides accepted in local/ (with `localOverrides`, or allowed by a `strictOverrides` rule). */
  readonly localOverrides: readonly string[];
  /** Project, participant, participant type and kit serial named in the kit's signed manifest. */
  readonly project: string;
  readonly participant: string;
  readonly type: ParticipantType;
  readonly kitSerial: string;
}

/** A verified kit and the exact bytes that were verified, by kit-relative path (signature.json files excluded). */
export interface VerifiedKitContents {
  readonly verification: KitVerification;
  readonly files: ReadonlyMap<string, Uint8Array>;
}

interface Walk {
  readonly top: string;
  readonly keys: { root: KeyObject; participant?: () => Promise<KeyObject | undefined> };
  signer?: 'root' | 'participant';
  readonly allowLocal: boolean;
  readonly strict: ReadonlyMap<string, KitLocalOverride>;
  readonly local: string[];
  readonly seenFolders: string[];
  /** Every file read, signed or an accepted override, by kit-relative path: each is read exactly once. */
  readonly contents: Map<string, Uint8Array>;
  readonly signed: Set<string>;
  folders: number;
}

/**
 * Checks every file and folder of a startup kit against its signature.json files and its signed manifest, and
 * reports the first problem by file name: a changed byte (E_KIT_TAMPERED), a listed file that is missing
 * (E_KIT_FILE_MISSING), a file or folder nobody signed (E_KIT_UNSIGNED), a symlink (E_KIT_SYMLINK), a broken
 * signature.json or manifest (E_KIT_SIGNATURE_FILE), a signed file of another kit or a certificate of another
 * participant (E_KIT_MIXED).
 *
 * @example
 * ```ts
 * await verifyKit('workspace/example_project/prod_00/site-1'); // throws PkiError naming the file
 * ```
 */
export async function verifyKit(dir: string, options: VerifyKitOptions = {}): Promise<KitVerification> {
  return (await verifyKitContents(dir, options)).verification;
}

/**
 * {@link verifyKit}, returning also the bytes it verified, so that a caller uses exactly what was checked and
 * never reads a kit file a second time (a file swapped between the check and the use would go unnoticed).
 * @internal loadKit's reader; its `Kit.files` is the public form.
 */
export async function verifyKitContents(dir: string, options: VerifyKitOptions = {}): Promise<VerifiedKitContents> {
  const top = resolve(dir);
  const info = await lstat(top).catch((e: unknown) => {
    throw new PkiError('E_KIT_FILE_MISSING', `kit folder ${top} does not exist`, { cause: e });
  });
  if (info.isSymbolicLink()) throw new PkiError('E_KIT_SYMLINK', `kit folder ${top} is a symbolic link`);
  if (!info.isDirectory()) throw new PkiError('E_KIT_FILE_MISSING', `${top} is not a kit folder`);
  const contents = new Map<string, Uint8Array>();
  // The kit's own root is read once, here; the walk checks these same bytes against their signature.
  const rootPem = options.rootCaPem ?? decoder.decode(await readKitFile(top, ROOT_CA_FILE, contents, true));
  let root: KeyObject;
  try {
    root = parseCertificate(rootPem, 'root CA certificate').node.publicKey;
  } catch (e) {
    // The kit's own root no longer parses: it was changed after signing (a pinned root is the caller's input).
    if (options.rootCaPem !== undefined) throw e;
    throw new PkiError('E_KIT_TAMPERED', `${ROOT_CA_FILE} is not a parsable certificate: it changed after the kit was signed`, { cause: e });
  }
  let participantKey: KeyObject | undefined | null = null;
  const participant = async (): Promise<KeyObject | undefined> => {
    if (participantKey !== null) return participantKey;
    participantKey = undefined;
    for (const file of LEAF_FILES) {
      const bytes = await readKitFile(top, file, contents).catch(() => undefined);
      if (bytes === undefined) continue;
      // A participant-signed kit is only as good as the certificate that signs it: it must chain to the root.
      // If it does not, there is no participant signer, and the signature that failed is reported as tampered.
      try {
        const pem = decoder.decode(bytes);
        verifyCertificate(pem, { rootCaPem: rootPem, ...(options.at === undefined ? {} : { at: options.at }) });
        participantKey = createPublicKey(pem);
      } catch {
        participantKey = undefined;
      }
      break;
    }
    return participantKey;
  };
  const walk: Walk = {
    top,
    keys: { root, participant },
    allowLocal: options.localOverrides === true,
    strict: new Map((options.strictOverrides ?? []).map((r) => [r.file, r] as const)),
    local: [],
    seenFolders: [],
    contents,
    signed: new Set(),
    folders: 0,
  };
  await verifyFolder(walk, top);
  const manifest = checkManifest(walk);
  checkLeafIdentity(walk, manifest);
  checkStrictOverrides(walk);
  const verification: KitVerification = {
    dir: top,
    files: walk.signed.size,
    folders: walk.folders,
    signer: walk.signer ?? 'root',
    localOverrides: walk.local,
    project: manifest.project,
    participant: manifest.participant,
    type: manifest.type,
    kitSerial: manifest.kitSerial,
  };
  return { verification, files: contents };
}

const ROOT_CA_FILE = 'startup/rootCA.pem';
const LEAF_FILES = ['startup/server.crt', 'startup/client.crt'];
const decoder = new TextDecoder();

function checkManifest(walk: Walk): z.infer<typeof manifestSchema> {
  // Every file and folder the walk saw was signed; the manifest (signed too, and required) says nothing was
  // removed, and its hashes say every signed file was made for this kit.
  const bytes = walk.signed.has(MANIFEST_FILE) ? walk.contents.get(MANIFEST_FILE) : undefined;
  if (bytes === undefined) throw new PkiError('E_KIT_FILE_MISSING', `${MANIFEST_FILE} is missing: the kit's list of signed files cannot be checked`);
  let manifest: z.infer<typeof manifestSchema>;
  try {
    const json = parseStrictJson(decoder.decode(bytes), { maxDepth: 3 });
    const format = (json as { format?: unknown } | null)?.format;
    if (typeof format === 'string' && format !== MANIFEST_FORMAT && format.startsWith('flare-ts-kit/')) {
      throw new PkiError('E_KIT_SIGNATURE_FILE', `${MANIFEST_FILE} is in format ${format}, which does not bind each file to this kit: provision the kit again`);
    }
    manifest = manifestSchema.parse(json);
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError('E_KIT_SIGNATURE_FILE', `${MANIFEST_FILE} is not a valid kit manifest`, { cause: e });
  }
  const folders = new Set(walk.seenFolders);
  for (const f of manifest.folders) if (!folders.has(f)) throw new PkiError('E_KIT_FILE_MISSING', `folder ${f} is listed in ${MANIFEST_FILE} but missing`);
  for (const f of Object.keys(manifest.files)) if (!walk.signed.has(f)) throw new PkiError('E_KIT_FILE_MISSING', `${f} is listed in ${MANIFEST_FILE} but missing`);
  const listedFolders = new Set(manifest.folders);
  for (const f of walk.seenFolders) if (!listedFolders.has(f)) throw new PkiError('E_KIT_MIXED', `folder ${f} is signed but not in ${MANIFEST_FILE}: it belongs to another kit`);
  for (const f of walk.signed) {
    if (f === MANIFEST_FILE) continue;
    const want = manifest.files[f];
    if (want === undefined) throw new PkiError('E_KIT_MIXED', `${f} is signed but not in ${MANIFEST_FILE}: it belongs to another kit`);
    if (sha256(walk.contents.get(f)!) !== want) {
      throw new PkiError('E_KIT_MIXED', `${f} is signed by the project but is not the file of this kit (${manifest.type} '${manifest.participant}', kit ${manifest.kitSerial}): it was taken from another kit`);
    }
  }
  return manifest;
}

/** The kit's certificate must be the manifest's participant, of the manifest's type. */
function checkLeafIdentity(walk: Walk, manifest: z.infer<typeof manifestSchema>): void {
  const file = LEAF_FILES.find((f) => walk.contents.has(f));
  if (file === undefined) return; // loadKit reports a kit without a certificate (E_KIT_INVALID)
  let id: { name: string; type: string };
  try {
    const der = parseCertificate(decoder.decode(walk.contents.get(file))).node.raw;
    id = identityOfAttributes(readCertificateFields(der).subject);
  } catch (e) {
    throw new PkiError('E_KIT_INVALID', `${file} is not a FLARE-TS participant certificate`, { cause: e });
  }
  if (id.name !== manifest.participant || id.type !== manifest.type) {
    throw new PkiError('E_KIT_MIXED', `${file} is for ${id.type} '${id.name}' but the kit's manifest names ${manifest.type} '${manifest.participant}': it was taken from another kit`);
  }
}

/** Each override a rule allowed during the walk, checked against the signed default now that both are read. */
function checkStrictOverrides(walk: Walk): void {
  for (const [file, rule] of walk.strict) {
    const local = walk.contents.get(`local/${file}`);
    if (local === undefined || walk.signed.has(`local/${file}`)) continue;
    const defaultPath = `local/${file}.default`;
    rule.check(local, walk.signed.has(defaultPath) ? walk.contents.get(defaultPath) : undefined);
  }
}

async function readKitFile(top: string, rel: string, contents: Map<string, Uint8Array>, required = false): Promise<Uint8Array> {
  const had = contents.get(rel);
  if (had !== undefined) return had;
  const path = join(top, rel);
  let bytes: Uint8Array;
  try {
    const info = await lstat(path);
    if (info.isSymbolicLink()) throw new PkiError('E_KIT_SYMLINK', `${rel} is a symbolic link: a signed kit holds regular files only`);
    if (!info.isFile()) throw new PkiError('E_KIT_SYMLINK', `${rel} is not a regular file`);
    if (info.size > MAX_KIT_FILE) throw new PkiError('E_KIT_TAMPERED', `${rel} is larger than ${MAX_KIT_FILE} bytes: no signed kit file is`);
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError('E_KIT_FILE_MISSING', required ? `${path} is missing: a kit needs its root CA to be verified` : `${rel} cannot be read`, { cause: e });
  }
  if (bytes.length > MAX_KIT_FILE) throw new PkiError('E_KIT_TAMPERED', `${rel} is larger than ${MAX_KIT_FILE} bytes: no signed kit file is`);
  contents.set(rel, bytes);
  return bytes;
}

async function checkSignature(walk: Walk, data: Uint8Array, signature: Buffer): Promise<boolean> {
  if (walk.signer !== 'participant' && verifyBytes(walk.keys.root, data, signature)) {
    walk.signer = 'root';
    return true;
  }
  if (walk.signer === undefined) {
    const key = await walk.keys.participant?.();
    if (key && verifyBytes(key, data, signature)) {
      walk.signer = 'participant';
      return true;
    }
  } else if (walk.signer === 'participant') {
    const key = await walk.keys.participant?.();
    return key !== undefined && verifyBytes(key, data, signature);
  }
  return false;
}

async function verifyFolder(walk: Walk, dir: string): Promise<void> {
  walk.folders++;
  const relDir = relative(walk.top, dir).split(sep).join('/');
  const rel = (name: string): string => (relDir === '' ? name : `${relDir}/${name}`);
  const sigPath = join(dir, SIGNATURE_FILE);
  const sigInfo = await lstat(sigPath).catch(() => undefined);
  if (!sigInfo) throw new PkiError('E_KIT_UNSIGNED', `folder ${relDir === '' ? '(kit root)' : relDir} has no ${SIGNATURE_FILE}: nothing in it is signed`);
  if (sigInfo.isSymbolicLink()) throw new PkiError('E_KIT_SYMLINK', `${rel(SIGNATURE_FILE)} is a symbolic link`);
  if (!sigInfo.isFile() || sigInfo.size > MAX_SIGNATURE_FILE) throw new PkiError('E_KIT_SIGNATURE_FILE', `${rel(SIGNATURE_FILE)} is not a regular file of at most ${MAX_SIGNATURE_FILE} bytes`);
  const signatures = parseSignatureFile(await readFile(sigPath, 'utf8'), rel(SIGNATURE_FILE));

  const present = new Map((await readdir(dir, { withFileTypes: true })).filter((e) => e.name !== SIGNATURE_FILE).map((e) => [e.name, e] as const));
  const names = [...new Set([...present.keys(), ...signatures.keys()])].sort();
  for (const name of names) {
    const entry = present.get(name);
    const sig = signatures.get(name);
    if (!entry) throw new PkiError('E_KIT_FILE_MISSING', `${rel(name)} is listed in ${rel(SIGNATURE_FILE)} but missing`);
    if (entry.isSymbolicLink()) throw new PkiError('E_KIT_SYMLINK', `${rel(name)} is a symbolic link: a signed kit holds regular files only`);
    if (!entry.isFile() && !entry.isDirectory()) throw new PkiError('E_KIT_SYMLINK', `${rel(name)} is not a regular file or folder`);
    if (sig === undefined && entry.isFile() && relDir === 'local' && ((walk.allowLocal && LOCAL_OVERRIDE_FILES.has(name)) || walk.strict.has(name))) {
      await readKitFile(walk.top, rel(name), walk.contents);
      walk.local.push(rel(name));
      continue;
    }
    if (sig === undefined) throw new PkiError('E_KIT_UNSIGNED', `${rel(name)} is present but not signed (not in ${rel(SIGNATURE_FILE)})`);
    const data = entry.isDirectory() ? encoder.encode(name) : await readKitFile(walk.top, rel(name), walk.contents);
    if (!(await checkSignature(walk, data, sig))) {
      throw new PkiError('E_KIT_TAMPERED', `${rel(name)} does not match its signature: it changed after the kit was signed`);
    }
    if (entry.isDirectory()) {
      walk.seenFolders.push(rel(name));
      await verifyFolder(walk, join(dir, name));
    } else {
      walk.signed.add(rel(name));
    }
  }
}

function parseSignatureFile(text: string, where: string): Map<string, Buffer> {
  let json: unknown;
  try {
    json = parseStrictJson(text, { maxDepth: 2 });
  } catch (e) {
    throw new PkiError('E_KIT_SIGNATURE_FILE', `${where} is not valid JSON${e instanceof FlareError ? ` (${e.code})` : ''}`, { cause: e });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new PkiError('E_KIT_SIGNATURE_FILE', `${where} is not a JSON object of name: signature`);
  const out = new Map<string, Buffer>();
  for (const [name, value] of Object.entries(json)) {
    if (name === '' || name === '.' || name === '..' || name === SIGNATURE_FILE || /[/\\\0]/.test(name)) {
      throw new PkiError('E_KIT_SIGNATURE_FILE', `${where} lists the invalid name ${JSON.stringify(name)}`);
    }
    if (typeof value !== 'string' || !BASE64.test(value) || value.length > 4096) {
      throw new PkiError('E_KIT_SIGNATURE_FILE', `${where}: the signature of ${JSON.stringify(name)} is not base64`);
    }
    out.set(name, Buffer.from(value, 'base64'));
  }
  return out;
}
