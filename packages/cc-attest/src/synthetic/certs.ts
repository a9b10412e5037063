import { constants, createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { derBitString as bits, derBooleanEncode as bool, derContext as ctx, derInteger as int, derNull as nul, derOctetString as octets, derOidEncode as oid, derSequence as seq, derSet, derTimeEncode as time, derUtf8String } from '@flare/core';

// Synthetic X.509 certificates for the test authority (internal): the same profiles the vendors use
// (RSASSA-PSS SHA-384 for AMD, ECDSA P-256 for Intel, ECDSA P-384 for NVIDIA), signed with node:crypto, so
// synthetic evidence exercises exactly the code paths real evidence does.

/** A Name from RDNs in order, each a [attribute OID, value] pair (UTF8String). */
export function name(rdns: ReadonlyArray<readonly [string, string]>): Uint8Array {
  return seq(...rdns.map(([type, value]) => derSet(seq(oid(type), derUtf8String(value)))));
}

export const AT = { CN: '2.5.4.3', O: '2.5.4.10', OU: '2.5.4.11', C: '2.5.4.6', L: '2.5.4.7', ST: '2.5.4.8' } as const;

/** A key pair and the algorithm its certificates are signed with. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly kind: 'rsa-pss' | 'p256' | 'p384';
}

export function newKey(kind: SigningKey['kind']): SigningKey {
  if (kind === 'rsa-pss') {
    // RSA-2048 keeps the test authority fast; AMD's ARK is RSA-4096 and the verifier does not depend on size.
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return { privateKey, publicKey, kind };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: kind === 'p256' ? 'P-256' : 'P-384' });
  return { privateKey, publicKey, kind };
}

const SHA384 = '2.16.840.1.101.3.4.2.2';

function sigAlg(kind: SigningKey['kind']): Uint8Array {
  if (kind === 'rsa-pss') {
    // RFC 4055 RSASSA-PSS-params with SHA-384, MGF1-SHA-384, salt 48, as AMD KDS certificates carry them.
    const hash = seq(oid(SHA384), nul());
    return seq(oid('1.2.840.113549.1.1.10'), seq(ctx(0, hash), ctx(1, seq(oid('1.2.840.113549.1.1.8'), hash)), ctx(2, int(48)), ctx(3, int(1))));
  }
  return seq(oid(kind === 'p256' ? '1.2.840.10045.4.3.2' : '1.2.840.10045.4.3.3'));
}

function signBytes(key: SigningKey, data: Uint8Array): Uint8Array {
  if (key.kind === 'rsa-pss') return new Uint8Array(sign('sha384', data, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }));
  return new Uint8Array(sign(key.kind === 'p256' ? 'sha256' : 'sha384', data, key.privateKey));
}

/** What a synthetic certificate says. */
export interface CertSpec {
  readonly subject: ReadonlyArray<readonly [string, string]>;
  readonly issuer: ReadonlyArray<readonly [string, string]>;
  readonly publicKey: KeyObject;
  readonly signer: SigningKey;
  readonly serial: number;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly ca: boolean;
  /** Extra extensions: [OID, DER content of extnValue]. */
  readonly extensions?: ReadonlyArray<readonly [string, Uint8Array]>;
}

/** Builds and signs a DER certificate. */
export function makeCertificate(spec: CertSpec): Uint8Array {
  const spki = new Uint8Array(spec.publicKey.export({ type: 'spki', format: 'der' }));
  const ski = createHash('sha1').update(spki).digest();
  const exts = [
    seq(oid('2.5.29.19'), bool(true), octets(seq(...(spec.ca ? [bool(true)] : [])))),
    seq(oid('2.5.29.15'), bool(true), octets(bits(new Uint8Array([spec.ca ? 0x06 : 0x80])))),
    seq(oid('2.5.29.14'), octets(octets(new Uint8Array(ski)))),
    ...(spec.extensions ?? []).map(([id, value]) => seq(oid(id), octets(value))),
  ];
  const alg = sigAlg(spec.signer.kind);
  const tbs = seq(ctx(0, int(2)), int(spec.serial), alg, name(spec.issuer), seq(time(spec.notBefore), time(spec.notAfter)), name(spec.subject), spki, ctx(3, seq(...exts)));
  return seq(tbs, alg, bits(signBytes(spec.signer, tbs)));
}

export function toPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

