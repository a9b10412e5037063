import { sign, verify, type KeyObject } from 'node:crypto';
import { verifyCertificate } from '@flare/pki';
import type { SecAggSigner, SecAggVerifier } from '@flare/secagg';

/**
 * A site's identity for secure aggregation: its startup kit's key and certificate and the project root. Its
 * round keys are signed with the kit key, so a server (which holds no site's key) cannot substitute them.
 */
export interface SecAggIdentity {
  /** The site's kit private key (`Kit.privateKey`). */
  readonly privateKey: KeyObject;
  /** The site's kit certificate (`Kit.certPem`): sent with its advertised keys so its neighbours can check them. */
  readonly certPem: string;
  /** The project root (`Kit.rootCaPem`): other sites' certificates must chain to it. */
  readonly rootCaPem: string;
  /** The project CRL the kit carries (`Kit.crlPem`): a revoked site's keys are refused. */
  readonly crlPem?: string | undefined;
  /**
   * The newest CRL the site holds (PEM; its `CrlStore`'s current one, which the server's pushes update), read
   * at every check and used instead of `crlPem` when it returns one: a site revoked after provisioning is
   * refused as a peer without re-provisioning.
   */
  readonly crl?: () => string | undefined;
}

/** The hash a key's signature scheme takes: none for EdDSA, SHA-256 for ECDSA and RSA (PKCS#1 v1.5). */
const hashFor = (key: KeyObject): string | null => (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256');

/** Signs the site's secure-aggregation transcripts with its kit key. */
export function kitSigner(privateKey: KeyObject): SecAggSigner {
  return { sign: (message) => new Uint8Array(sign(hashFor(privateKey), message, privateKey)) };
}

/**
 * Verifies a site's secure-aggregation signatures with the public key of that site's certificate, after
 * checking the certificate: issued by the project root, valid now, not revoked, a client's, with exactly the
 * site's name as CN. `certificates` is read at each call (the workflow adds certificates as they arrive); a
 * site with no certificate, or a bad one, has no valid signature. `crlPem` may be a function (the site's newest
 * CRL, read at each call): a certificate is checked again whenever the CRL changed.
 */
export function certificateVerifier(rootCaPem: string, certificates: ReadonlyMap<string, string>, crlPem?: string | (() => string | undefined)): SecAggVerifier {
  const keys = new Map<string, { pem: string; crl: string | undefined; key: KeyObject }>();
  const keyOf = (site: string): KeyObject | undefined => {
    const pem = certificates.get(site);
    if (pem === undefined) return undefined;
    const crl = typeof crlPem === 'function' ? crlPem() : crlPem;
    const known = keys.get(site);
    if (known?.pem === pem && known.crl === crl) return known.key;
    try {
      const v = verifyCertificate(pem, { rootCaPem, ...(crl === undefined ? {} : { crl }), expectedName: site, expectedType: 'client' });
      keys.set(site, { pem, crl, key: v.publicKey });
      return v.publicKey;
    } catch {
      keys.delete(site);
      return undefined;
    }
  };
  return {
    verify(site, message, signature) {
      const key = keyOf(site);
      if (key === undefined) return false;
      try {
        return verify(hashFor(key), message, key, signature);
      } catch {
        return false;
      }
    },
  };
}
