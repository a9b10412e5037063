import { createHash, randomBytes, verify } from 'node:crypto';
import { AttestError, type AttestErrorCode } from '@flare/core';
import { OID, parseCertificate, signedBy, validAt, type ParsedCertificate } from '../cert.js';
import { children, expect, oid, readTlv, TAG, time, uint, type Tlv } from '../der.js';
import type { CollateralFetcher } from '../fetcher.js';

// OCSP (RFC 6960) for NVIDIA device and RIM signer certificates, as nvtrust checks them against
// ocsp.ndis.nvidia.com: CertID with SHA-384, a request nonce, the response signed by the issuer or by a
// responder certificate it delegated (id-kp-OCSPSigning), fresh at the verification time. Internal.

const ID_PKIX_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
const ID_PKIX_OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2';
const ID_KP_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';
const SHA384 = '2.16.840.1.101.3.4.2.2';

/** NVIDIA's OCSP responder (nvtrust config.py OCSP_URL). */
const NVIDIA_OCSP_URL = 'https://ocsp.ndis.nvidia.com/';

// A small DER writer for the request (kept local: the synthetic encoder is test tooling).
const tlv = (tag: number, c: Uint8Array): Uint8Array => {
  const n = c.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return new Uint8Array(Buffer.concat([Buffer.from([tag, ...len]), c]));
};
const seq = (...items: Uint8Array[]) => tlv(0x30, new Uint8Array(Buffer.concat(items)));
const oidDer = (dotted: string) => {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const b: number[] = [];
    let v = arc;
    do {
      b.unshift((v & 0x7f) | (b.length ? 0x80 : 0));
      v = Math.floor(v / 128);
    } while (v > 0);
    out.push(...b);
  }
  return tlv(0x06, new Uint8Array(out));
};

function certId(cert: ParsedCertificate, issuer: ParsedCertificate): { der: Uint8Array; nameHash: string; keyHash: string } {
  const nameHash = createHash('sha384').update(issuer.subjectDer).digest();
  const keyHash = createHash('sha384').update(issuer.publicKeyBits).digest();
  const serial = Buffer.from(cert.serialHex.length % 2 ? `0${cert.serialHex}` : cert.serialHex, 'hex');
  const serialDer = tlv(0x02, new Uint8Array(serial[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), serial]) : serial));
  const der = seq(seq(oidDer(SHA384), new Uint8Array([5, 0])), tlv(0x04, nameHash), tlv(0x04, keyHash), serialDer);
  return { der, nameHash: nameHash.toString('hex'), keyHash: keyHash.toString('hex') };
}

/** Builds an OCSPRequest for `cert` (issued by `issuer`) with a nonce extension. */
export function buildOcspRequest(cert: ParsedCertificate, issuer: ParsedCertificate, nonce: Uint8Array): Uint8Array {
  const ext = seq(oidDer(ID_PKIX_OCSP_NONCE), tlv(0x04, tlv(0x04, nonce)));
  return seq(seq(seq(seq(certId(cert, issuer).der)), tlv(0xa2, seq(ext))));
}

/** The status OCSP gave one certificate. */
export type OcspStatus = { readonly status: 'good' } | { readonly status: 'revoked'; readonly reason: number | undefined; readonly at: Date } | { readonly status: 'unknown' };

/** An OCSP problem: the response could not be trusted or does not answer the question. */
class OcspFailure extends Error {
  constructor(
    readonly code: AttestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const fail = (code: AttestErrorCode, message: string): never => {
  throw new OcspFailure(code, message);
};

function extensionsOf(t: Tlv | undefined): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  if (t === undefined) return out;
  for (const ext of children(children(t.value)[0]?.value ?? new Uint8Array())) {
    const parts = children(ext.value);
    out.set(oid(parts[0]!.value), parts[parts.length - 1]!.value);
  }
  return out;
}

/**
 * Checks an OCSPResponse for `cert`: successful basic response, signed by `issuer` or by a responder it
 * certified for OCSP signing, answering for this CertID, with our nonce when the responder echoes one, and
 * current at `at` (thisUpdate <= at <= nextUpdate, 5 minutes of skew).
 */
export function checkOcspResponse(der: Uint8Array, cert: ParsedCertificate, issuer: ParsedCertificate, nonce: Uint8Array, at: Date): OcspStatus {
  let outer: Tlv[];
  try {
    outer = children(expect(readTlv(der), TAG.SEQUENCE, 'OCSPResponse').value);
  } catch {
    return fail('E_ATTEST_MALFORMED', 'the OCSP response is not DER');
  }
  const status = outer[0]?.value[0];
  if (outer[0]?.tag !== 0x0a || status !== 0) return fail('E_ATTEST_REVOKED', `the OCSP responder answered status ${status} (not successful)`);
  const bytes = children(children(outer[1]!.value)[0]!.value);
  if (oid(bytes[0]!.value) !== ID_PKIX_OCSP_BASIC) return fail('E_ATTEST_UNSUPPORTED', 'the OCSP response is not a basic response');
  const [tbs, alg, sig, certsTlv] = children(readTlv(bytes[1]!.value).value);
  const algOid = oid(children(alg!.value)[0]!.value);
  const hash = algOid === OID.ecdsaSha384 ? 'sha384' : algOid === OID.ecdsaSha256 ? 'sha256' : fail('E_ATTEST_UNSUPPORTED', `OCSP signature algorithm ${algOid}`);
  const embedded = certsTlv === undefined ? [] : children(children(certsTlv.value)[0]!.value).map((c) => parseCertificate(c.raw));
  const signers = [issuer, ...embedded.filter((r) => signedBy(r, issuer) && validAt(r, at) && hasOcspSigning(r))];
  const signed = signers.some((s) => {
    try {
      return verify(hash, tbs!.raw, s.publicKey, sig!.value.subarray(1));
    } catch {
      return false;
    }
  });
  if (!signed) return fail('E_ATTEST_SIGNATURE', 'the OCSP response is not signed by the issuer or a responder it authorized');
  const fields = children(tbs!.value);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  i++; // responderID
  i++; // producedAt
  const responses = children(fields[i]!.value);
  const exts = extensionsOf(fields[i + 1]?.tag === 0xa1 ? fields[i + 1] : undefined);
  const echoed = exts.get(ID_PKIX_OCSP_NONCE);
  if (echoed !== undefined && !Buffer.from(readTlv(echoed).value).equals(Buffer.from(nonce))) return fail('E_ATTEST_NONCE', 'the OCSP response nonce is not ours (replayed response)');
  const id = certId(cert, issuer);
  for (const single of responses) {
    const [cid, st, thisUpdate, ...rest] = children(single.value);
    const c = children(cid!.value);
    if (Buffer.from(c[1]!.value).toString('hex') !== id.nameHash || Buffer.from(c[2]!.value).toString('hex') !== id.keyHash || Buffer.from(c[3]!.value).toString('hex').replace(/^(00)+(?=.)/, '') !== cert.serialHex) continue;
    const skew = 5 * 60_000;
    const next = rest.find((t) => t.tag === 0xa0);
    if (time(thisUpdate!).getTime() - skew > at.getTime() || (next !== undefined && time(children(next.value)[0]!).getTime() + skew < at.getTime())) {
      return fail('E_ATTEST_CERT_EXPIRED', 'the OCSP response is not current at the verification time');
    }
    if (st!.tag === 0x80) return { status: 'good' };
    if (st!.tag === 0xa1) {
      const info = children(st!.value);
      const reason = info[1]?.tag === 0xa0 ? uint(children(info[1].value)[0]!.value) : undefined;
      return { status: 'revoked', reason, at: time(info[0]!) };
    }
    return { status: 'unknown' };
  }
  return fail('E_ATTEST_REVOKED', 'the OCSP response does not answer for this certificate');
}

function hasOcspSigning(c: ParsedCertificate): boolean {
  const eku = c.extensions.get('2.5.29.37');
  if (eku === undefined) return false;
  return children(readTlv(eku).value).some((t) => t.tag === TAG.OID && oid(t.value) === ID_KP_OCSP_SIGNING);
}

/**
 * Asks the NVIDIA OCSP responder about every non-root certificate of `chain` (leaf first, ending at the
 * root). Returns a failure description for the first certificate that is not "good", or undefined.
 */
export async function ocspCheckChain(fetcher: CollateralFetcher, chain: readonly ParsedCertificate[], at: Date, url = NVIDIA_OCSP_URL): Promise<{ code: AttestErrorCode; detail: string } | undefined> {
  if (fetcher.post === undefined) return { code: 'E_ATTEST_FETCH', detail: 'the fetcher cannot POST OCSP requests' };
  for (let i = 0; i + 1 < chain.length; i++) {
    const cert = chain[i]!;
    const nonce = new Uint8Array(randomBytes(32));
    const { body } = await fetcher.post(url, buildOcspRequest(cert, chain[i + 1]!, nonce), 'application/ocsp-request');
    try {
      const s = checkOcspResponse(body, cert, chain[i + 1]!, nonce, at);
      // RFC 5280 CRLReason 6 = certificateHold: nvtrust refuses it like a revocation unless told otherwise.
      if (s.status === 'revoked') return { code: 'E_ATTEST_REVOKED', detail: `"${cert.subject}" is ${s.reason === 6 ? 'on hold' : 'revoked'} (OCSP, since ${s.at.toISOString()})` };
      if (s.status === 'unknown') return { code: 'E_ATTEST_REVOKED', detail: `OCSP does not know "${cert.subject}"` };
    } catch (e) {
      if (e instanceof OcspFailure) return { code: e.code, detail: `OCSP for "${cert.subject}": ${e.message}` };
      if (e instanceof AttestError) return { code: 'E_ATTEST_MALFORMED', detail: `OCSP for "${cert.subject}": ${e.message}` };
      throw e;
    }
  }
  return undefined;
}
