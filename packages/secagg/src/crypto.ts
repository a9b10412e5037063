import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { encodeFields } from './bytes.js';

// The symmetric and key-agreement primitives of the protocol, all from node:crypto (OpenSSL). Internal.
//  - Key agreement: X25519 (RFC 7748). A site's two key pairs per round come from 32-byte seeds through HKDF, so
//    that the mask key can be rebuilt from its Shamir-shared seed when the site drops out.
//  - Key derivation: HKDF-SHA256 (RFC 5869), salt = the round's context digest, info = a label and the site
//    names, length-prefixed (encodeFields), so every key is bound to its role, its round and its pair.
//  - Share encryption: AES-256-GCM (NIST SP 800-38D), 96-bit random nonce, the label, round and both sites as
//    associated data: a share cannot be moved to another pair, direction, job or round without failing.
//  - PRG: AES-256-CTR keystream (prg.ts).

/** The protocol identifier: it prefixes every label, so keys of another protocol or version never coincide. */
export const PROTOCOL = 'flare-secagg/1';

/** Raw X25519 public keys and shared secrets are 32 bytes. */
const KEY_BYTES = 32;
/** AES-GCM nonce and tag. */
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

// PKCS#8 DER prefix of an X25519 private key (RFC 8410 §7): SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.110 },
// OCTET STRING { OCTET STRING (32 bytes) } }. Node imports raw X25519 scalars only through a container.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
// SubjectPublicKeyInfo DER prefix of an X25519 public key (RFC 8410 §4).
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** HKDF-SHA256 of `ikm` into `length` bytes, with the round's context as salt and a length-prefixed info. */
export function derive(ikm: Uint8Array, context: Uint8Array, info: ReadonlyArray<Uint8Array | string>, length = 32): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, context, encodeFields(PROTOCOL, ...info), length));
}

/** SHA-256 of the length-prefixed fields. */
export function digest(...fields: ReadonlyArray<Uint8Array | string>): Uint8Array {
  return new Uint8Array(createHash('sha256').update(encodeFields(...fields)).digest());
}

/** An X25519 key pair for one role in one round. */
export interface AgreementKey {
  readonly privateKey: KeyObject;
  /** The raw 32-byte public key (RFC 7748 u-coordinate). */
  readonly publicKey: Uint8Array;
}

/** The X25519 private key whose scalar is exactly these 32 bytes (clamped by X25519 itself, RFC 7748 §5). */
export function x25519FromScalar(scalar: Uint8Array): AgreementKey {
  if (scalar.length !== KEY_BYTES) throw new RangeError(`an X25519 scalar is 32 bytes, got ${scalar.length}`);
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: new Uint8Array(spki.subarray(X25519_SPKI_PREFIX.length)) };
}

/** The X25519 key a site derives from a secret seed for `role` (its mask key is rebuilt this way by the server). */
export function x25519FromSeed(seed: Uint8Array, context: Uint8Array, site: string, role: 'mask' | 'channel'): AgreementKey {
  return x25519FromScalar(derive(seed, context, [`${role} key`, site]));
}

/** A public key object from 32 raw bytes, or undefined when they are not a valid X25519 public key. */
export function x25519PublicKey(raw: Uint8Array): KeyObject | undefined {
  if (raw.length !== KEY_BYTES) return undefined;
  try {
    return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
}

/**
 * X25519(private, public); undefined for an all-zero result, which a low-order public key forces (RFC 7748 §6.1:
 * "check ... whether the shared secret is the all-zero value and abort if so").
 */
export function agree(privateKey: KeyObject, publicKey: KeyObject): Uint8Array | undefined {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    return undefined;
  }
  let any = 0;
  for (const b of shared) any |= b;
  return any === 0 ? undefined : new Uint8Array(shared);
}

/** Bytes of one encrypted share on the wire: nonce | ciphertext | tag. */
export function sealedBytes(plaintextBytes: number): number {
  return NONCE_BYTES + plaintextBytes + TAG_BYTES;
}

/** AES-256-GCM encryption of `plaintext` with `aad`, a fresh random nonce first and the tag last. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return new Uint8Array(Buffer.concat([nonce, body, cipher.getAuthTag()]));
}

/** The plaintext of {@link seal}'s output, or undefined when it fails authentication or has the wrong length. */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array, plaintextBytes: number): Uint8Array | undefined {
  if (sealed.length !== sealedBytes(plaintextBytes)) return undefined;
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return new Uint8Array(Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]));
  } catch {
    return undefined;
  }
}
