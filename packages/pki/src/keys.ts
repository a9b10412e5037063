import {
  constants,
  createCipheriv,
  pbkdf2,
  randomBytes,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as nodeGenerateKeyPair,
  sign,
  verify,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { derInteger, derNull, derOctetString, derOidEncode, derSequence } from '@flare/core';

/**
 * The key types FLARE-TS issues. `ecdsa-p256` (the default: see docs/key-types.md for the measurements that
 * chose it) or `rsa-2048` (FLARE's own key type, for peers that need RSA).
 */
export type KeyType = 'ecdsa-p256' | 'rsa-2048';

/** Every {@link KeyType}, in the order the CLI lists them. */
export const KEY_TYPES: readonly KeyType[] = ['ecdsa-p256', 'rsa-2048'];

/** The key type `provision` uses when none is given (chosen by measurement, docs/key-types.md). */
export const DEFAULT_KEY_TYPE: KeyType = 'ecdsa-p256';

/** A private key with its public half, as node:crypto KeyObjects. */
export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** Throws RangeError unless `keyType` is a {@link KeyType}. */
export function assertKeyType(keyType: unknown): asserts keyType is KeyType {
  if (keyType !== 'ecdsa-p256' && keyType !== 'rsa-2048') {
    throw new RangeError(`"keyType" expected one of ${KEY_TYPES.join(', ')}, got ${String(keyType)}`);
  }
}

/** Generates a key pair on libuv's thread pool (node:crypto), so many can be made in parallel. */
export function generateKeyPair(keyType: KeyType): Promise<KeyPair> {
  assertKeyType(keyType);
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject): void => {
      if (err) reject(err);
      else resolve({ publicKey, privateKey });
    };
    if (keyType === 'ecdsa-p256') nodeGenerateKeyPair('ec', { namedCurve: 'prime256v1' }, done);
    else nodeGenerateKeyPair('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, done);
  });
}

/** The key type of a node:crypto key, or undefined for a type FLARE-TS does not issue. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  if (key.asymmetricKeyType === 'rsa' && key.asymmetricKeyDetails?.modulusLength === 2048) return 'rsa-2048';
  return undefined;
}

/** PKCS#8 PEM of a private key (unencrypted: participant keys, whose protection is the kit's file mode). */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * PBKDF2-HMAC-SHA256 iterations for the encrypted root key: OWASP's 2023 recommendation (600,000). Node's own
 * `export({ cipher, passphrase })` uses OpenSSL's default of 2,048, too few against offline guessing.
 */
const ROOT_KEY_PBKDF2_ITERATIONS = 600_000;

const OID_PBES2 = '1.2.840.113549.1.5.13';
const OID_PBKDF2 = '1.2.840.113549.1.5.12';
const OID_HMAC_SHA256 = '1.2.840.113549.2.9';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';

/**
 * Encrypted PKCS#8 PEM (RFC 5958 EncryptedPrivateKeyInfo, PBES2 of RFC 8018 6.2 with PBKDF2-HMAC-SHA256 and
 * AES-256-CBC), readable by node:crypto and `openssl pkey`. Async: key derivation runs off the main thread.
 */
export async function encryptedPrivateKeyPem(key: KeyObject, passphrase: string, iterations = ROOT_KEY_PBKDF2_ITERATIONS): Promise<string> {
  if (passphrase === '') throw new RangeError('"passphrase" must not be empty');
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const derived = await new Promise<Buffer>((resolve, reject) => pbkdf2(passphrase, salt, iterations, 32, 'sha256', (err, k) => (err ? reject(err) : resolve(k))));
  const cipher = createCipheriv('aes-256-cbc', derived, iv);
  const encrypted = Buffer.concat([cipher.update(key.export({ type: 'pkcs8', format: 'der' })), cipher.final()]);
  const pbkdf2Params = derSequence(derOctetString(salt), derInteger(iterations), derSequence(derOidEncode(OID_HMAC_SHA256), derNull()));
  const pbes2Params = derSequence(derSequence(derOidEncode(OID_PBKDF2), pbkdf2Params), derSequence(derOidEncode(OID_AES256_CBC), derOctetString(iv)));
  const der = derSequence(derSequence(derOidEncode(OID_PBES2), pbes2Params), derOctetString(encrypted));
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${b64}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
}

/** True when `privateKey` is the private half of `publicKey` (compares SPKI encodings). */
export function keysMatch(privateKey: KeyObject, publicKey: KeyObject): boolean {
  const a = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const b = publicKey.export({ type: 'spki', format: 'der' });
  return a.equals(b);
}

/** Loads a private key from PEM (PKCS#8, SEC1 or PKCS#1); `passphrase` for encrypted PKCS#8. */
export function loadPrivateKey(pem: string | Buffer, passphrase?: string): KeyObject {
  return passphrase === undefined ? createPrivateKey(pem) : createPrivateKey({ key: pem, passphrase });
}

/**
 * Signs bytes the way FLARE's SignatureBuilder does for RSA keys: RSA-PSS with SHA-256, MGF1-SHA256 and the
 * maximum salt length (nvflare/lighter/utils.py sign_content); ECDSA P-256 keys sign with ECDSA-SHA256 (DER).
 */
export function signBytes(privateKey: KeyObject, data: Uint8Array): Buffer {
  if (privateKey.asymmetricKeyType === 'rsa') {
    return sign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN });
  }
  return sign('sha256', data, privateKey);
}

/** Verifies a {@link signBytes} signature; never throws for a bad signature, returns false. */
export function verifyBytes(publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (publicKey.asymmetricKeyType === 'rsa') {
      return verify('sha256', data, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
    }
    return verify('sha256', data, publicKey, signature);
  } catch {
    return false;
  }
}

/** WebCrypto algorithm parameters for a key type (what @peculiar/x509 signs certificates with). */
export function webAlgorithm(keyType: KeyType): { readonly importParams: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams; readonly signing: webcrypto.Algorithm | webcrypto.EcdsaParams } {
  // Certificates are signed like FLARE's (RSA PKCS#1 v1.5 with SHA-256) or with ECDSA-SHA256 (RFC 5758 3.2).
  return keyType === 'rsa-2048'
    ? { importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signing: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.Algorithm }
    : { importParams: { name: 'ECDSA', namedCurve: 'P-256' }, signing: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
}

// One import per issuer key, not per certificate: provisioning 1,000 kits signs 1,000 certificates with it.
const signingKeys = new WeakMap<KeyObject, Promise<webcrypto.CryptoKey>>();

/** Imports a node private key into WebCrypto for signing (Node 20 has no KeyObject.toCryptoKey); cached per key. */
export function toSigningCryptoKey(privateKey: KeyObject): Promise<webcrypto.CryptoKey> {
  const cached = signingKeys.get(privateKey);
  if (cached) return cached;
  const keyType = keyTypeOf(privateKey);
  if (keyType === undefined) return Promise.reject(new RangeError('signing key must be an ECDSA P-256 or RSA-2048 private key'));
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const imported = webcrypto.subtle.importKey('pkcs8', der, webAlgorithm(keyType).importParams, false, ['sign']);
  signingKeys.set(privateKey, imported);
  return imported;
}

/** Imports a node key pair into WebCrypto (needed to sign a CSR with @peculiar/x509). */
export async function toCryptoKeyPair(pair: KeyPair): Promise<webcrypto.CryptoKeyPair> {
  const keyType = keyTypeOf(pair.privateKey);
  if (keyType === undefined) throw new RangeError('key must be an ECDSA P-256 or RSA-2048 key');
  const params = webAlgorithm(keyType).importParams;
  const privateKey = (await webcrypto.subtle.importKey('pkcs8', pair.privateKey.export({ type: 'pkcs8', format: 'der' }), params, false, ['sign'])) as webcrypto.CryptoKey;
  const publicKey = (await webcrypto.subtle.importKey('spki', pair.publicKey.export({ type: 'spki', format: 'der' }), params, true, ['verify'])) as webcrypto.CryptoKey;
  return { privateKey, publicKey };
}
