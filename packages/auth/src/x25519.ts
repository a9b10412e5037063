import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { AuthError } from '@flare/core';

/** An ephemeral X25519 key pair (RFC 7748) with its public key as 32 raw bytes, base64url. */
export interface Ephemeral {
  readonly privateKey: KeyObject;
  readonly publicB64u: string;
}

/** PKCS#8 DER of an X25519 private key (RFC 8410) up to its 32 key bytes. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * A fresh X25519 key pair: 32 random bytes as the private key (RFC 7748: any 32 bytes are one; the scalar is
 * clamped when used). Not `generateKeyPairSync('x25519')`: on Node 20 the generation job locks the key's mutex
 * when the garbage collector destroys it, and `export({ format: 'jwk' })` holds that same mutex while it
 * allocates, so a collection at that moment deadlocks the thread for good. An aggregating relay of the scale
 * bench hung so after about 7,000 logins (issue #18); a loop of generate + export hangs within 3,000-11,000
 * rounds under a small young generation (test/x25519-deadlock.test.ts). An imported key has no such job.
 */
export function ephemeral(): Ephemeral {
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicB64u: createPublicKey(privateKey).export({ format: 'jwk' }).x! };
}

/**
 * The X25519 shared secret with the peer's public key. OpenSSL refuses an all-zero result (a low-order peer
 * key, RFC 7748 section 6.1), which we report as a handshake error.
 */
export function sharedSecret(own: KeyObject, peerB64u: string): Uint8Array {
  try {
    const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peerB64u }, format: 'jwk' });
    return new Uint8Array(diffieHellman({ privateKey: own, publicKey: peer }));
  } catch (cause) {
    throw new AuthError('E_AUTH_HANDSHAKE', 'the peer sent an unusable X25519 public key', { cause });
  }
}
