import { createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AuthError } from '@flare/core';

/** An ephemeral X25519 key pair (RFC 7748) with its public key as 32 raw bytes, base64url. */
export interface Ephemeral {
  readonly privateKey: KeyObject;
  readonly publicB64u: string;
}

export function ephemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicB64u: publicKey.export({ format: 'jwk' }).x! };
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
