import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { AttestError, type AttestErrorCode } from '@flare/core';
import { children, expect, oid, readTlv, TAG, time, type Tlv } from './der.js';

// X.509 handling shared by the three verifiers (internal). node:crypto verifies the signatures (RSA-PSS and
// ECDSA) and gives the public key; the DER walker reads what node does not expose: raw issuer and subject
// names, signature-algorithm parameters and the extensions. Parsed certificates and verified links are
// cached by fingerprint, so a warm verifier re-checks a known chain without re-parsing or re-verifying it.

export const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  sha384: '2.16.840.1.101.3.4.2.2',
  p256: '1.2.840.10045.3.1.7',
  p384: '1.3.132.0.34',
} as const;

/** A parsed certificate: node's view plus the fields read from the DER. */
export interface ParsedCertificate {
  readonly der: Uint8Array;
  readonly x509: X509Certificate;
  readonly publicKey: KeyObject;
  /** SHA-256 of the DER, lowercase hex. */
  readonly sha256: string;
  readonly subject: string;
  readonly issuer: string;
  readonly subjectDer: Uint8Array;
  readonly issuerDer: Uint8Array;
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly version: number;
  readonly sigAlg: string;
  readonly sigAlgParams: Uint8Array | undefined;
  readonly keyAlg: string;
  /** The named curve OID for EC keys. */
  readonly curve: string | undefined;
  readonly isCa: boolean;
  /** The subjectPublicKey BIT STRING contents without the unused-bits octet (what OCSP's issuerKeyHash hashes). */
  readonly publicKeyBits: Uint8Array;
  /** Extension OID -> the extnValue content octets. */
  readonly extensions: ReadonlyMap<string, Uint8Array>;
}

const CACHE_LIMIT = 512;
const certCache = new Map<string, ParsedCertificate>();
const linkCache = new Map<string, boolean>();

function remember<V>(map: Map<string, V>, key: string, value: V): V {
  if (map.size >= CACHE_LIMIT) map.delete(map.keys().next().value as string);
  map.set(key, value);
  return value;
}

/** Empties the certificate and signature caches (tests and benchmarks use it to measure a cold start). */
export function clearCertificateCache(): void {
  certCache.clear();
  linkCache.clear();
}

const oneLine = (name: string): string => name.split('\n').join(', ');

/** Parses one DER certificate (cached by fingerprint). @throws AttestError E_ATTEST_MALFORMED */
export function parseCertificate(der: Uint8Array): ParsedCertificate {
  const sha256 = createHash('sha256').update(der).digest('hex');
  const hit = certCache.get(sha256);
  if (hit !== undefined) return hit;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (cause) {
    throw new AttestError('E_ATTEST_MALFORMED', 'a certificate is not valid DER X.509', { cause });
  }
  const outer = readTlv(der);
  const [tbs, algId] = children(expect(outer, TAG.SEQUENCE, 'Certificate').value);
  const fields = children(expect(tbs, TAG.SEQUENCE, 'TBSCertificate').value);
  let i = 0;
  let version = 1;
  if (fields[0]?.tag === 0xa0) {
    version = (children(fields[0].value)[0]?.value[0] ?? 0) + 1;
    i = 1;
  }
  const serial = expect(fields[i], TAG.INTEGER, 'serial');
  const issuer = expect(fields[i + 2], TAG.SEQUENCE, 'issuer');
  const validity = children(expect(fields[i + 3], TAG.SEQUENCE, 'validity').value);
  const subject = expect(fields[i + 4], TAG.SEQUENCE, 'subject');
  const spki = children(expect(fields[i + 5], TAG.SEQUENCE, 'subjectPublicKeyInfo').value);
  const spkiAlg = children(expect(spki[0], TAG.SEQUENCE, 'key algorithm').value);
  const extensions = new Map<string, Uint8Array>();
  for (const f of fields.slice(i + 6)) {
    if (f.tag !== 0xa3) continue;
    for (const ext of children(expect(children(f.value)[0], TAG.SEQUENCE, 'extensions').value)) {
      const parts = children(expect(ext, TAG.SEQUENCE, 'extension').value);
      const id = oid(expect(parts[0], TAG.OID, 'extension id').value);
      const value = expect(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue').value;
      if (extensions.has(id)) throw new AttestError('E_ATTEST_MALFORMED', `certificate repeats extension ${id}`);
      extensions.set(id, value);
    }
  }
  const alg = children(expect(algId, TAG.SEQUENCE, 'signatureAlgorithm').value);
  const keyAlg = oid(expect(spkiAlg[0], TAG.OID, 'key algorithm').value);
  const parsed: ParsedCertificate = {
    der,
    x509,
    publicKey: x509.publicKey,
    sha256,
    subject: oneLine(x509.subject),
    issuer: oneLine(x509.issuer),
    subjectDer: subject.raw,
    issuerDer: issuer.raw,
    serialHex: Buffer.from(serial.value).toString('hex').replace(/^(00)+(?=.)/, ''),
    notBefore: time(validity[0] as Tlv),
    notAfter: time(validity[1] as Tlv),
    version,
    sigAlg: oid(expect(alg[0], TAG.OID, 'signature algorithm').value),
    sigAlgParams: alg[1]?.raw,
    keyAlg,
    curve: keyAlg === OID.ecPublicKey && spkiAlg[1]?.tag === TAG.OID ? oid(spkiAlg[1].value) : undefined,
    isCa: x509.ca,
    publicKeyBits: expect(spki[1], TAG.BIT_STRING, 'subjectPublicKey').value.subarray(1),
    extensions,
  };
  return remember(certCache, sha256, parsed);
}

/** Splits PEM text into DER certificates, in order. Text outside the armour is ignored. */
function pemToDer(text: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const re = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) out.push(new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  return out;
}

/** Parses certificates given as PEM text (any number) or as one DER certificate. */
export function parseCertificates(data: Uint8Array | string): ParsedCertificate[] {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----')) return pemToDer(text).map(parseCertificate);
  if (typeof data === 'string') throw new AttestError('E_ATTEST_MALFORMED', 'no PEM certificate found');
  return [parseCertificate(data)];
}

/** True when `parent`'s key verifies `child`'s signature (cached per pair). */
export function signedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  const key = `${child.sha256}:${parent.sha256}`;
  const hit = linkCache.get(key);
  if (hit !== undefined) return hit;
  let ok = false;
  try {
    ok = Buffer.compare(child.issuerDer, parent.subjectDer) === 0 && child.x509.verify(parent.publicKey);
  } catch {
    ok = false;
  }
  return remember(linkCache, key, ok);
}

/** The outcome of a chain check: ok, or the code and reason of the first problem. */
export type ChainOutcome = { readonly ok: true; readonly detail: string } | { readonly ok: false; readonly code: AttestErrorCode; readonly detail: string };

/** A certificate's place in a verified chain, as reported in results. */
export interface ChainEntry {
  readonly role: string;
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly sha256: string;
}

/** Describes a certificate for results and `--json`. */
export function chainEntry(role: string, c: ParsedCertificate): ChainEntry {
  return {
    role,
    subject: c.subject,
    issuer: c.issuer,
    serial: c.serialHex,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    sha256: c.sha256,
  };
}

/** Whether `c` is valid at `at` (RFC 5280 4.1.2.5: both bounds inclusive). */
export function validAt(c: ParsedCertificate, at: Date): boolean {
  return c.notBefore.getTime() <= at.getTime() && at.getTime() <= c.notAfter.getTime();
}

/**
 * Checks a chain given leaf first and ending at a certificate whose fingerprint is `rootSha256` (a pinned
 * root): every link is signed by the next certificate, every issuer is a CA, and every certificate is valid
 * at `at`. Signature problems are reported before validity, so a forged chain is never called "expired".
 */
export function checkChain(chain: readonly ParsedCertificate[], rootSha256: string, at: Date, names: readonly string[]): ChainOutcome {
  const name = (i: number) => names[i] ?? `certificate ${i}`;
  if (chain.length < 2) return { ok: false, code: 'E_ATTEST_CHAIN', detail: `chain has ${chain.length} certificate(s); it needs the signing certificate and its issuers` };
  const root = chain[chain.length - 1]!;
  if (root.sha256 !== rootSha256) return { ok: false, code: 'E_ATTEST_CHAIN', detail: `chain ends at "${root.subject}" (sha256 ${root.sha256.slice(0, 16)}...), not at the pinned root` };
  if (!signedBy(root, root)) return { ok: false, code: 'E_ATTEST_CHAIN', detail: 'the pinned root does not verify its own signature' };
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const parent = chain[i + 1]!;
    if (!parent.isCa) return { ok: false, code: 'E_ATTEST_CHAIN', detail: `${name(i + 1)} "${parent.subject}" is not a CA certificate` };
    if (!signedBy(child, parent)) return { ok: false, code: 'E_ATTEST_CHAIN', detail: `${name(i)} "${child.subject}" is not signed by ${name(i + 1)} "${parent.subject}"` };
  }
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!;
    if (!validAt(c, at)) {
      return {
        ok: false,
        code: 'E_ATTEST_CERT_EXPIRED',
        detail: `${name(i)} "${c.subject}" is valid ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()}, not at ${at.toISOString()}`,
      };
    }
  }
  return { ok: true, detail: chain.map((c, i) => `${name(i)} "${c.subject}"`).join(' <- ') };
}
