// The project's CA state in <workspace>/<project>/state/: root certificate, root key (encrypted at rest when a
// passphrase is given), the register of issued certificates, revocations and the current CRL. Internal.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PkiError, writeFileAtomic } from '@flare/core';
import { z } from 'zod';
import type { CertificateAuthority } from './certificate.js';
import { createCrl } from './crl.js';
import { encryptedPrivateKeyPem, keysMatch, loadPrivateKey, privateKeyPem, type KeyType } from './keys.js';
import type { Participant } from './project.js';

/** The CA state folder inside a project folder. */
export const STATE_DIR = 'state';
const STATE_FILE = 'ca.json';
const ROOT_CERT = 'rootCA.pem';
const ROOT_KEY = 'rootCA.key';
const CRL_FILE = 'crl.pem';
const FORMAT = 'flare-ts-ca/1';

const issuedSchema = z.strictObject({
  serial: z.string().regex(/^[0-9a-f]+$/),
  name: z.string().min(1).max(64),
  type: z.enum(['server', 'client', 'admin', 'relay']),
  org: z.string(),
  role: z.string().optional(),
  /** What the certificate binds besides the subject (SAN hosts), to tell when a re-issue is needed. */
  hosts: z.array(z.string()),
  notAfter: z.iso.datetime(),
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  certPem: z.string().max(16384),
  revoked: z.strictObject({ date: z.iso.datetime(), reason: z.number().int().min(0).max(10).optional() }).optional(),
});
const participantSchema = z.looseObject({ name: z.string().min(1), type: z.enum(['server', 'client', 'admin', 'relay']), org: z.string(), props: z.record(z.string(), z.unknown()) });
const stateSchema = z.strictObject({
  format: z.literal(FORMAT),
  project: z.string().min(1),
  keyType: z.enum(['ecdsa-p256', 'rsa-2048']),
  encrypted: z.boolean(),
  createdAt: z.iso.datetime(),
  crlNumber: z.number().int().min(0),
  participants: z.array(participantSchema),
  issued: z.array(issuedSchema),
});

/** One issued certificate in the CA register. */
export type IssuedRecord = z.infer<typeof issuedSchema>;
/** The CA register (state/ca.json), as validated. */
type CaStateData = z.infer<typeof stateSchema>;

/** An opened CA: its state, the root authority and where it lives. */
export interface OpenCa {
  readonly dir: string;
  readonly data: CaStateData;
  readonly root: CertificateAuthority;
  readonly passphrase: string | undefined;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** True when `<projectDir>/state/ca.json` exists. */
export function hasCaState(projectDir: string): Promise<boolean> {
  return exists(join(projectDir, STATE_DIR, STATE_FILE));
}

/**
 * Opens the CA state of a project folder. Refuses a missing state (E_CA_STATE_MISSING), a damaged or foreign
 * one (E_CA_STATE_UNREADABLE) and an encrypted root key without the right passphrase (E_CA_PASSPHRASE).
 */
export async function openCa(projectDir: string, passphrase: string | undefined, expectProject?: string): Promise<OpenCa> {
  const dir = join(projectDir, STATE_DIR);
  if (!(await exists(join(dir, STATE_FILE)))) throw new PkiError('E_CA_STATE_MISSING', `no CA state in ${dir}`);
  let data: CaStateData;
  let certPem: string;
  let keyPem: string;
  try {
    const text = await readFile(join(dir, STATE_FILE), 'utf8');
    data = stateSchema.parse(JSON.parse(text));
    certPem = await readFile(join(dir, ROOT_CERT), 'utf8');
    keyPem = await readFile(join(dir, ROOT_KEY), 'utf8');
  } catch (e) {
    throw new PkiError('E_CA_STATE_UNREADABLE', `the CA state in ${dir} cannot be read (missing file or invalid ca.json)`, { cause: e });
  }
  if (expectProject !== undefined && data.project !== expectProject) {
    throw new PkiError('E_CA_STATE_UNREADABLE', `the CA state in ${dir} belongs to project '${data.project}', not '${expectProject}'`);
  }
  const encrypted = keyPem.includes('BEGIN ENCRYPTED PRIVATE KEY');
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new PkiError('E_CA_PASSPHRASE', `the root key in ${dir} is encrypted: set FLARE_CA_PASSPHRASE`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = loadPrivateKey(keyPem, encrypted ? passphrase : undefined);
  } catch (e) {
    if (encrypted) throw new PkiError('E_CA_PASSPHRASE', `the root key in ${dir} cannot be decrypted with the given passphrase`, { cause: e });
    throw new PkiError('E_CA_STATE_UNREADABLE', `the root key in ${dir} is not a readable private key`, { cause: e });
  }
  let matches = false;
  try {
    matches = keysMatch(privateKey, createPublicKey(certPem));
  } catch {
    matches = false;
  }
  if (!matches) throw new PkiError('E_CA_STATE_UNREADABLE', `the root key in ${dir} does not belong to its rootCA.pem`);
  return { dir, data, root: { certPem, privateKey }, passphrase: passphrase === '' ? undefined : passphrase };
}

/** Creates the state folder for a new root and writes it. */
export async function createCaState(projectDir: string, project: string, keyType: KeyType, root: CertificateAuthority, passphrase: string | undefined, now: Date): Promise<OpenCa> {
  const dir = join(projectDir, STATE_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const data: CaStateData = {
    format: FORMAT,
    project,
    keyType,
    encrypted: passphrase !== undefined && passphrase !== '',
    createdAt: now.toISOString(),
    crlNumber: 0,
    participants: [],
    issued: [],
  };
  const ca: OpenCa = { dir, data, root, passphrase: passphrase === '' ? undefined : passphrase };
  await writeFileAtomic(join(dir, ROOT_CERT), root.certPem, { mode: 0o644 });
  await writeRootKey(ca);
  await saveCa(ca);
  return ca;
}

async function writeRootKey(ca: OpenCa): Promise<void> {
  // Encrypted PKCS#8 (PBES2, PBKDF2-SHA256 600k, AES-256-CBC) when a passphrase is set; otherwise plaintext,
  // mode 0600, alone in state/ (issued participants' keys are never stored here: they live only in their kits).
  const pem = ca.passphrase === undefined ? privateKeyPem(ca.root.privateKey) : await encryptedPrivateKeyPem(ca.root.privateKey, ca.passphrase);
  await writeFileAtomic(join(ca.dir, ROOT_KEY), pem, { mode: 0o600 });
}

/** Saves ca.json; re-encrypts the root key if a passphrase was given for a plaintext key. */
export async function saveCa(ca: OpenCa): Promise<void> {
  const encrypted = ca.passphrase !== undefined;
  if (encrypted !== ca.data.encrypted) {
    ca.data.encrypted = encrypted;
    await writeRootKey(ca);
  }
  await writeFileAtomic(join(ca.dir, STATE_FILE), JSON.stringify(ca.data, null, 2) + '\n', { mode: 0o600 });
}

/** Issues a new CRL from the register (incrementing the CRL number), stores it as state/crl.pem, returns PEM. */
export async function refreshCrl(ca: OpenCa, now: Date): Promise<string> {
  ca.data.crlNumber += 1;
  const entries = ca.data.issued
    .filter((r) => r.revoked !== undefined)
    .map((r) => ({ serial: r.serial, date: new Date(r.revoked!.date), ...(r.revoked!.reason === undefined ? {} : { reason: r.revoked!.reason }) }));
  const pem = await createCrl({ issuer: ca.root, entries, crlNumber: ca.data.crlNumber, now });
  await writeFileAtomic(join(ca.dir, CRL_FILE), pem, { mode: 0o644 });
  return pem;
}

/** Stores participant definitions so later provisioning runs keep added participants. */
export function storeParticipants(ca: OpenCa, participants: readonly Participant[]): void {
  ca.data.participants = participants.map((p) => JSON.parse(JSON.stringify(p)) as CaStateData['participants'][number]);
}

/** The participants remembered from earlier runs. */
export function storedParticipants(ca: OpenCa): Participant[] {
  return ca.data.participants.map((p) => p as unknown as Participant);
}
