import { constants, verify } from 'node:crypto';
import { AttestError } from '@flare/core';
import { OID, type ParsedCertificate } from './cert.js';
import { children, expect, oid, readTlv, TAG, time } from './der.js';

// Certificate revocation lists (RFC 5280 section 5), parsed with the DER walker and verified with node:crypto
// (internal). Used for the AMD ARK-signed CRL (RSASSA-PSS SHA-384) and the Intel root and PCK CRLs (ECDSA).

/** A parsed CRL. */
export interface ParsedCrl {
  readonly issuerDer: Uint8Array;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** Serial numbers (lowercase hex, no leading zeros) of revoked certificates. */
  readonly revoked: ReadonlySet<string>;
  readonly tbs: Uint8Array;
  readonly sigAlg: string;
  readonly signature: Uint8Array;
}

/** Parses a DER CRL. @throws AttestError E_ATTEST_CRL when it is not a CRL */
export function parseCrl(der: Uint8Array): ParsedCrl {
  try {
    const [tbs, alg, sig] = children(expect(readTlv(der), TAG.SEQUENCE, 'CertificateList').value);
    const f = children(expect(tbs, TAG.SEQUENCE, 'TBSCertList').value);
    let i = f[0]?.tag === TAG.INTEGER ? 1 : 0;
    i++; // signature AlgorithmIdentifier
    const issuer = expect(f[i++], TAG.SEQUENCE, 'issuer');
    const thisUpdate = time(f[i++]!);
    let nextUpdate: Date | undefined;
    if (f[i]?.tag === TAG.UTC_TIME || f[i]?.tag === TAG.GENERALIZED_TIME) nextUpdate = time(f[i++]!);
    const revoked = new Set<string>();
    if (f[i]?.tag === TAG.SEQUENCE) {
      for (const entry of children(f[i]!.value)) {
        const serial = expect(children(expect(entry, TAG.SEQUENCE, 'revoked entry').value)[0], TAG.INTEGER, 'serial');
        revoked.add(Buffer.from(serial.value).toString('hex').replace(/^(00)+(?=.)/, ''));
      }
    }
    const bits = expect(sig, TAG.BIT_STRING, 'signature');
    return {
      issuerDer: issuer.raw,
      thisUpdate,
      nextUpdate,
      revoked,
      tbs: tbs!.raw,
      sigAlg: oid(expect(children(expect(alg, TAG.SEQUENCE, 'algorithm').value)[0], TAG.OID, 'algorithm').value),
      signature: bits.value.subarray(1),
    };
  } catch (cause) {
    if (cause instanceof AttestError && cause.code !== 'E_ATTEST_MALFORMED') throw cause;
    throw new AttestError('E_ATTEST_CRL', 'the CRL cannot be parsed', { cause });
  }
}

/** Whether `issuer` signed `crl` (name match and signature). */
export function crlSignedBy(crl: ParsedCrl, issuer: ParsedCertificate): boolean {
  if (Buffer.compare(crl.issuerDer, issuer.subjectDer) !== 0) return false;
  try {
    switch (crl.sigAlg) {
      case OID.rsassaPss:
        // AMD KDS CRLs: RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (KDS spec 57230, same as its certificates).
        return verify('sha384', crl.tbs, { key: issuer.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, crl.signature);
      case OID.ecdsaSha256:
        return verify('sha256', crl.tbs, issuer.publicKey, crl.signature);
      case OID.ecdsaSha384:
        return verify('sha384', crl.tbs, issuer.publicKey, crl.signature);
      default:
        return false;
    }
  } catch {
    return false;
  }
}
