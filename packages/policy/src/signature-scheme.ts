import { createHash, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';

// The one signature scheme of @flare/policy: admin-key signatures over a domain prefix and canonical JSON
// (job manifests, aborts and the deprecated BYOC manifest all go through here). Internal.

/** Most files a signed job may hold. */
export const MAX_JOB_FILES = 10_000;
/** Longest relative path of a job file. */
export const MAX_JOB_PATH = 1024;
const SAFE_SEGMENT = /^[^/\\\0]+$/;

/** Signature options per key type: ECDSA P-256 and Ed25519 as they are; RSA as RSA-PSS with SHA-256 and a 32-byte salt. */
function scheme(key: KeyObject): { alg: string | null; padding?: number; saltLength?: number } {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return { alg: 'sha256' };
    case 'ed25519':
      return { alg: null };
    case 'rsa':
    case 'rsa-pss':
      return { alg: 'sha256', padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 };
    default:
      throw new TypeError(`unsupported key type ${String(key.asymmetricKeyType)} for an admin signature`);
  }
}

/** A private key from a KeyObject or PEM. */
export function privateKeyOf(key: KeyObject | string): KeyObject {
  return typeof key === 'string' ? createPrivateKey(key) : key;
}

/** Signs `bytes` with an admin private key; base64. */
export function signBytes(bytes: Uint8Array, key: KeyObject): string {
  const { alg, ...opts } = scheme(key);
  return sign(alg, bytes, { key, ...opts }).toString('base64');
}

/** True when `signature` (base64) is `key`'s signature of `bytes`; false for any malformed input. */
export function verifyBytes(bytes: Uint8Array, key: KeyObject, signature: string): boolean {
  try {
    const { alg, ...opts } = scheme(key);
    return verify(alg, bytes, { key, ...opts }, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** The reason `path` is not a safe relative POSIX path inside a job folder, or undefined when it is. */
export function unsafePath(path: string): string | undefined {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_JOB_PATH) return `a job file path must have 1 to ${MAX_JOB_PATH} characters`;
  const segments = path.split('/');
  if (segments.some((s) => !SAFE_SEGMENT.test(s) || s === '.' || s === '..')) return `job file path ${JSON.stringify(path.slice(0, 100))} is not a safe relative path`;
  return undefined;
}

/** SHA-256 (hex) of every file, by path. */
export function fileDigests(files: ReadonlyMap<string, Uint8Array>): Record<string, string> {
  const digests: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [path, bytes] of files) digests[path] = createHash('sha256').update(bytes).digest('hex');
  return digests;
}

/** SHA-256 (hex) of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
