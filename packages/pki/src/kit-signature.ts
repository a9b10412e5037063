import { createPublicKey, type KeyObject } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { FlareError, PkiError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { parseCertificate } from './identity.js';
import { signBytes, verifyBytes } from './keys.js';
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

/** The kit's signed list of every file and folder (ours, not FLARE's): makes deleting a signed file detectable. */
export const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 'flare-ts-kit/1';
const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  project: z.string().min(1),
  participant: z.string().min(1),
  folders: z.array(z.string()),
  files: z.array(z.string()),
});

/** Whose kit it is, recorded in the manifest. */
export interface KitIdentity {
  readonly project: string;
  readonly participant: string;
}

/**
 * Signs a kit held in memory the way FLARE's SignatureBuilder signs a folder tree: every folder gets a
 * signature.json mapping each file to base64(signature over its bytes) and each subfolder to a signature over
 * its name. `files` maps kit-relative paths (`startup/client.crt`) to contents; `folders` lists every folder
 * (`transfer` for an empty one). FLARE's format cannot show that a signed file was deleted together with its
 * signature.json entry (signature.json itself is unsigned), so a signed `manifest.json` at the top lists every
 * file and folder; verifyKit requires it. Returns the files to add: the manifest and the signature.json files.
 */
export function signKitFiles(files: ReadonlyMap<string, KitFile>, folders: Iterable<string>, privateKey: KeyObject, identity: KitIdentity): Map<string, KitFile> {
  const maps = new Map<string, Record<string, string>>();
  const mapOf = (folder: string): Record<string, string> => {
    let m = maps.get(folder);
    if (!m) maps.set(folder, (m = {}));
    return m;
  };
  const split = (path: string): [string, string] => {
    const i = path.lastIndexOf('/');
    return i < 0 ? ['', path] : [path.slice(0, i), path.slice(i + 1)];
  };
  const allFolders = new Set<string>(['']);
  for (const f of folders) for (let d = f; d !== ''; d = split(d)[0]) allFolders.add(d);
  const all = new Map([...files].filter(([path]) => path !== MANIFEST_FILE && split(path)[1] !== SIGNATURE_FILE));
  for (const path of all.keys()) for (let d = split(path)[0]; d !== ''; d = split(d)[0]) allFolders.add(d);
  const manifest = {
    format: MANIFEST_FORMAT,
    project: identity.project,
    participant: identity.participant,
    folders: [...allFolders].filter((f) => f !== '').sort(),
    files: [...all.keys()].sort(),
  };
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
}

/**
 * The site-local override files read from local/ instead of their signed `.default` versions: FLARE's four,
 * and components.json (the component allow-list of @flare/policy, FLARE-TS's own).
 */
export const LOCAL_OVERRIDE_FILES: ReadonlySet<string> = new Set(['authorization.json', 'privacy.json', 'resources.json', 'components.json', 'log_config.json']);

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
  /** Unsigned site overrides accepted in local/ (only with `localOverrides`). */
  readonly localOverrides: readonly string[];
  /** Project and participant named in the kit's signed manifest. */
  readonly project: string;
  readonly participant: string;
}

interface Walk {
  readonly top: string;
  readonly keys: { root: KeyObject; participant?: () => Promise<KeyObject | undefined> };
  signer?: 'root' | 'participant';
  readonly allowLocal: boolean;
  readonly local: string[];
  readonly seenFiles: string[];
  readonly seenFolders: string[];
  files: number;
  folders: number;
}

/**
 * Checks every file and folder of a startup kit against its signature.json files and reports the first problem
 * by file name: a changed byte (E_KIT_TAMPERED), a listed file that is missing (E_KIT_FILE_MISSING), a file or
 * folder nobody signed (E_KIT_UNSIGNED), a symlink (E_KIT_SYMLINK), a broken signature.json
 * (E_KIT_SIGNATURE_FILE).
 *
 * @example
 * ```ts
 * await verifyKit('workspace/example_project/prod_00/site-1'); // throws PkiError naming the file
 * ```
 */
export async function verifyKit(dir: string, options: VerifyKitOptions = {}): Promise<KitVerification> {
  const top = resolve(dir);
  const info = await lstat(top).catch((e: unknown) => {
    throw new PkiError('E_KIT_FILE_MISSING', `kit folder ${top} does not exist`, { cause: e });
  });
  if (info.isSymbolicLink()) throw new PkiError('E_KIT_SYMLINK', `kit folder ${top} is a symbolic link`);
  if (!info.isDirectory()) throw new PkiError('E_KIT_FILE_MISSING', `${top} is not a kit folder`);
  const rootPem = options.rootCaPem ?? (await readKitText(top, 'startup/rootCA.pem'));
  let root: KeyObject;
  try {
    root = parseCertificate(rootPem, 'root CA certificate').node.publicKey;
  } catch (e) {
    // The kit's own root no longer parses: it was changed after signing (a pinned root is the caller's input).
    if (options.rootCaPem !== undefined) throw e;
    throw new PkiError('E_KIT_TAMPERED', 'startup/rootCA.pem is not a parsable certificate: it changed after the kit was signed', { cause: e });
  }
  let participantKey: KeyObject | undefined | null = null;
  const participant = async (): Promise<KeyObject | undefined> => {
    if (participantKey !== null) return participantKey;
    participantKey = undefined;
    for (const name of ['server.crt', 'client.crt']) {
      const pem = await readFile(join(top, 'startup', name), 'utf8').catch(() => undefined);
      if (pem === undefined) continue;
      // A participant-signed kit is only as good as the certificate that signs it: it must chain to the root.
      // If it does not, there is no participant signer, and the signature that failed is reported as tampered.
      try {
        verifyCertificate(pem, { rootCaPem: rootPem, ...(options.at === undefined ? {} : { at: options.at }) });
        participantKey = createPublicKey(pem);
      } catch {
        participantKey = undefined;
      }
      break;
    }
    return participantKey;
  };
  const walk: Walk = { top, keys: { root, participant }, allowLocal: options.localOverrides === true, local: [], seenFiles: [], seenFolders: [], files: 0, folders: 0 };
  await verifyFolder(walk, top);
  const manifest = await checkManifest(walk);
  return { dir: top, files: walk.files, folders: walk.folders, signer: walk.signer ?? 'root', localOverrides: walk.local, project: manifest.project, participant: manifest.participant };
}

async function checkManifest(walk: Walk): Promise<z.infer<typeof manifestSchema>> {
  // Every file and folder the walk saw was signed; the manifest (signed too, and required) says nothing was removed.
  if (!walk.seenFiles.includes(MANIFEST_FILE)) throw new PkiError('E_KIT_FILE_MISSING', `${MANIFEST_FILE} is missing: the kit's list of signed files cannot be checked`);
  let manifest: z.infer<typeof manifestSchema>;
  try {
    manifest = manifestSchema.parse(parseStrictJson(await readFile(join(walk.top, MANIFEST_FILE), 'utf8'), { maxDepth: 3 }));
  } catch (e) {
    throw new PkiError('E_KIT_SIGNATURE_FILE', `${MANIFEST_FILE} is not a valid kit manifest`, { cause: e });
  }
  const files = new Set(walk.seenFiles);
  const folders = new Set(walk.seenFolders);
  for (const f of manifest.folders) if (!folders.has(f)) throw new PkiError('E_KIT_FILE_MISSING', `folder ${f} is listed in ${MANIFEST_FILE} but missing`);
  for (const f of manifest.files) if (!files.has(f)) throw new PkiError('E_KIT_FILE_MISSING', `${f} is listed in ${MANIFEST_FILE} but missing`);
  const listed = new Set([...manifest.files, ...manifest.folders, MANIFEST_FILE]);
  for (const f of [...walk.seenFolders, ...walk.seenFiles]) if (!listed.has(f)) throw new PkiError('E_KIT_UNSIGNED', `${f} is signed but not in ${MANIFEST_FILE}: it does not belong to this kit`);
  return manifest;
}

async function readKitText(top: string, rel: string): Promise<string> {
  try {
    return await readFile(join(top, rel), 'utf8');
  } catch (e) {
    throw new PkiError('E_KIT_FILE_MISSING', `${join(top, rel)} is missing: a kit needs its root CA to be verified`, { cause: e });
  }
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
  const rel = (name: string): string => relative(walk.top, join(dir, name)) || '.';
  const sigPath = join(dir, SIGNATURE_FILE);
  const sigInfo = await lstat(sigPath).catch(() => undefined);
  if (!sigInfo) throw new PkiError('E_KIT_UNSIGNED', `folder ${rel('.') === '.' ? '(kit root)' : rel('')} has no ${SIGNATURE_FILE}: nothing in it is signed`);
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
    if (sig === undefined && walk.allowLocal && entry.isFile() && relative(walk.top, dir) === 'local' && LOCAL_OVERRIDE_FILES.has(name)) {
      walk.local.push(rel(name));
      continue;
    }
    if (sig === undefined) throw new PkiError('E_KIT_UNSIGNED', `${rel(name)} is present but not signed (not in ${rel(SIGNATURE_FILE)})`);
    if (entry.isFile() && (await lstat(join(dir, name))).size > MAX_KIT_FILE) {
      throw new PkiError('E_KIT_TAMPERED', `${rel(name)} is larger than ${MAX_KIT_FILE} bytes: no signed kit file is`);
    }
    const data = entry.isDirectory() ? encoder.encode(name) : await readFile(join(dir, name));
    if (!(await checkSignature(walk, data, sig))) {
      throw new PkiError('E_KIT_TAMPERED', `${rel(name)} does not match its signature: it changed after the kit was signed`);
    }
    if (entry.isDirectory()) {
      walk.seenFolders.push(rel(name));
      await verifyFolder(walk, join(dir, name));
    } else {
      walk.seenFiles.push(rel(name));
      walk.files++;
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
