import { constants, createHash, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { AuthError } from '@flare/core';

// Login signatures use the kit key: RSA keys sign with RSA-PSS/SHA-256 (salt 32, RFC 8017 section 8.1, the
// scheme FLARE's kit signatures use), ECDSA with SHA-256 (DER), Ed25519 as is (RFC 8032).

function params(key: KeyObject): { alg: string | null; opts: { padding?: number; saltLength?: number } } {
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return { alg: 'sha256', opts: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } };
    case 'ec':
      return { alg: 'sha256', opts: {} };
    case 'ed25519':
      return { alg: null, opts: {} };
    default:
      throw new AuthError('E_AUTH_KEY', `a ${key.asymmetricKeyType ?? 'symmetric'} key cannot sign a login`);
  }
}

/** Signs `data` with a kit private key. */
export function signWithKit(privateKey: KeyObject, data: Uint8Array): Uint8Array {
  const { alg, opts } = params(privateKey);
  return sign(alg, data, { key: privateKey, ...opts });
}

/**
 * Verifies a login signature with a certificate's public key (the one `verifyCertificate` returns, so the
 * certificate is not parsed again: OpenSSL 3 spends about 0.1 ms decoding a key); false when it does not verify.
 */
export function verifyWithKey(publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  const { alg, opts } = params(publicKey);
  try {
    return verify(alg, data, { key: publicKey, ...opts }, signature);
  } catch {
    return false;
  }
}

/** @throws AuthError E_AUTH_KEY when the private key does not belong to the certificate. */
export function checkKeyPair(certPem: string, privateKey: KeyObject): void {
  if (!new X509Certificate(certPem).checkPrivateKey(privateKey)) throw new AuthError('E_AUTH_KEY', "the kit's private key does not match its certificate");
}

// One PEM certificate block and nothing else (RFC 7468 section 2, the strict form our transport writes).
const ONE_PEM = /^-----BEGIN CERTIFICATE-----\r?\n((?:[A-Za-z0-9+/=]+\r?\n)+)-----END CERTIFICATE-----\r?\n?$/;

/**
 * SHA-256 of a certificate's DER, lowercase hex (@flare/pki's `fingerprint` format). A PEM holding exactly one
 * certificate block is decoded directly; anything else is read by node:crypto, which takes its first
 * certificate, as the TLS layer would.
 */
export function derFingerprint(certPem: string): string {
  const m = ONE_PEM.exec(certPem);
  const der = m ? Buffer.from(m[1]!.replace(/\r?\n/g, ''), 'base64') : new X509Certificate(certPem).raw;
  return createHash('sha256').update(der).digest('hex');
}
