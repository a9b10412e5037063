import { constants, createPrivateKey, createPublicKey, createHash, sign, verify, type KeyObject } from 'node:crypto';
import { AuditError } from '@flare/core';
import type { SignatureAlg } from './record.js';

// Domain separation: the kit key also signs login transcripts and kit files; this prefix makes a checkpoint
// signature useless anywhere else, and any other signature useless as a checkpoint.
const DOMAIN = 'flare-ts audit checkpoint v1\n';

/** A site key ready to sign checkpoints. */
export interface CheckpointSigner {
  readonly alg: SignatureAlg;
  /** SPKI DER, base64. */
  readonly publicKey: string;
  sign(hash: string): string;
}

/** The algorithm a key signs with: ECDSA P-256 → ES256, RSA ≥ 2048 bits → PS256 (salt 32), Ed25519 → EdDSA. */
function algorithmOf(key: KeyObject): SignatureAlg | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1') return 'ES256';
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && (d?.modulusLength ?? 0) >= 2048) return 'PS256';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  return undefined;
}

const options = (alg: SignatureAlg, key: KeyObject) =>
  alg === 'ES256'
    ? { key, dsaEncoding: 'ieee-p1363' as const }
    : alg === 'PS256'
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
      : key;
const digest = (alg: SignatureAlg) => (alg === 'EdDSA' ? null : 'sha256');

/**
 * Turns the site's kit private key (KeyObject or PEM) into a checkpoint signer.
 *
 * @throws AuditError E_AUDIT_SIGNER for anything but an ECDSA P-256, RSA (≥ 2048 bits) or Ed25519 private key.
 */
export function checkpointSigner(signer: KeyObject | string): CheckpointSigner {
  let key: KeyObject;
  try {
    key = typeof signer === 'string' ? createPrivateKey(signer) : signer;
  } catch (cause) {
    throw new AuditError('E_AUDIT_SIGNER', 'the audit signer is not a readable private key', { cause });
  }
  if (key.type !== 'private') throw new AuditError('E_AUDIT_SIGNER', `the audit signer must be a private key, got a ${key.type} key`);
  const alg = algorithmOf(key);
  if (alg === undefined) throw new AuditError('E_AUDIT_SIGNER', `unsupported audit signer key (${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''})`);
  const publicKey = createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');
  return { alg, publicKey, sign: (hash) => sign(digest(alg), Buffer.from(DOMAIN + hash), options(alg, key)).toString('base64') };
}

/** Checks a checkpoint signature with the given public key (SPKI DER base64 or KeyObject). */
export function verifyCheckpoint(alg: SignatureAlg, publicKey: KeyObject, hash: string, sig: string): boolean {
  if (algorithmOf(publicKey) !== alg) return false;
  try {
    return verify(digest(alg), Buffer.from(DOMAIN + hash), options(alg, publicKey), Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}

/** A public key from SPKI DER base64, or undefined when it cannot be read. */
export function publicKeyFromSpki(spki: string): KeyObject | undefined {
  try {
    return createPublicKey({ key: Buffer.from(spki, 'base64'), format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
}

/** SHA-256 fingerprint (hex) of a public key's SPKI DER. */
export function fingerprint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
}
