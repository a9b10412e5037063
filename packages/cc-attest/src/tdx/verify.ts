import { createHash, createPublicKey, verify } from 'node:crypto';
import { AttestError } from '@flare/core';
import { bytesEqual, hex, isZero } from '../bytes.js';
import { chainEntry, checkChain, OID, parseCertificates, type ChainEntry, type ParsedCertificate } from '../cert.js';
import { Checks } from '../check.js';
import { crlSignedBy, parseCrl } from '../crl.js';
import type { CollateralFetcher } from '../fetcher.js';
import type { VerificationResult } from '../result.js';
import { VENDOR_TRUST, type TrustAnchors } from '../trust.js';
import { collateralSignedBy, evaluateQeIdentity, evaluateTdxTcb, parseTdxQeIdentity, parseTdxTcbInfo, type TdxTcbStatus } from './collateral.js';
import { readPckTcb, type PckTcb } from './pck.js';
import { parseTdxQuote, type TdxQuote } from './quote.js';

/**
 * Intel PCS collateral for offline TCB evaluation, as the PCS returns it: the JSON response bodies, the
 * issuer chain from the `TCB-Info-Issuer-Chain` header (PEM; the QE identity chain is the same TCB signing
 * certificate), and the DER CRLs.
 */
export interface TdxCollateral {
  readonly tcbInfo?: string;
  readonly qeIdentity?: string;
  readonly tcbInfoIssuerChain?: string;
  readonly qeIdentityIssuerChain?: string;
  /** The PCK Platform or Processor CA CRL (DER). */
  readonly pckCrl?: Uint8Array;
  /** The Intel SGX Root CA CRL (DER). */
  readonly rootCrl?: Uint8Array;
}

/** Inputs of {@link verifyTdxEvidence}. */
export interface TdxVerifyOptions {
  /** The quote (v4 or v5), possibly in a zero-padded buffer. */
  readonly evidence: Uint8Array;
  readonly collateral?: TdxCollateral;
  /** The expected REPORT_DATA (up to 64 bytes; the rest must be zero). */
  readonly nonce?: Uint8Array;
  readonly at: Date;
  /** TCB statuses accepted when collateral is given (default: UpToDate only). */
  readonly acceptedTcbStatuses?: readonly TdxTcbStatus[];
  /** Allows fetching missing TCB info, QE identity and CRLs from Intel PCS. */
  readonly fetcher?: CollateralFetcher;
  readonly trust?: TrustAnchors;
}

/** Claims of a TDX result, byte strings as hex. */
export interface TdxClaims {
  readonly version: number;
  readonly bodyType: 'TDX 1.0' | 'TDX 1.5';
  readonly teeTcbSvn: string;
  readonly mrSeam: string;
  readonly mrSignerSeam: string;
  readonly seamAttributes: string;
  readonly tdAttributes: string;
  readonly debug: boolean;
  readonly xfam: string;
  readonly mrTd: string;
  readonly mrConfigId: string;
  readonly mrOwner: string;
  readonly mrOwnerConfig: string;
  readonly rtmrs: readonly string[];
  readonly reportData: string;
  readonly teeTcbSvn2?: string;
  readonly mrServiceTd?: string;
  readonly qe: { readonly mrEnclave: string; readonly mrSigner: string; readonly isvProdId: number; readonly isvSvn: number };
  readonly pck: PckTcb | undefined;
  /** The TCB status from collateral, when collateral was supplied and matched. */
  readonly tcbStatus: TdxTcbStatus | undefined;
  readonly qeTcbStatus: TdxTcbStatus | undefined;
  readonly tcbDate: string | undefined;
  readonly advisoryIds: readonly string[];
  /** Bytes used by the quote inside the supplied buffer. */
  readonly quoteLength: number;
}

function rawP256(xy: Uint8Array) {
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: Buffer.from(xy.subarray(0, 32)).toString('base64url'), y: Buffer.from(xy.subarray(32, 64)).toString('base64url') },
    format: 'jwk',
  });
}

async function fetchCollateral(fetcher: CollateralFetcher, fmspc: string): Promise<TdxCollateral> {
  // Intel PCS API v4 (https://api.portal.trustedservices.intel.com/content/documentation.html).
  const base = 'https://api.trustedservices.intel.com/tdx/certification/v4';
  const tcb = await fetcher.get(`${base}/tcb?fmspc=${fmspc}`);
  const qe = await fetcher.get(`${base}/qe/identity`);
  const chain = (doc: { headers: Readonly<Record<string, string>> }, name: string) => {
    const v = doc.headers[name.toLowerCase()];
    if (v === undefined) throw new AttestError('E_ATTEST_FETCH', `PCS response lacks the ${name} header`);
    return decodeURIComponent(v);
  };
  return {
    tcbInfo: Buffer.from(tcb.body).toString('utf8'),
    qeIdentity: Buffer.from(qe.body).toString('utf8'),
    tcbInfoIssuerChain: chain(tcb, 'TCB-Info-Issuer-Chain'),
    qeIdentityIssuerChain: chain(qe, 'SGX-Enclave-Identity-Issuer-Chain'),
  };
}

/**
 * Verifies a TDX quote offline: parse by declared sizes; PCK leaf <- PCK CA <- pinned Intel SGX Root CA
 * (ECDSA P-256) valid at `at`; the QE report signed by the PCK key; the QE report binding the attestation key
 * (REPORT_DATA[0:32] = SHA-256(attestation key || QE auth data), [32:64] zero); the quote signed by the
 * attestation key. With collateral: CRLs, the TCB info and QE identity signatures (Intel TCB signing
 * certificate to the root), FMSPC/PCE-ID match, freshness, and the TCB status.
 */
export async function verifyTdxEvidence(options: TdxVerifyOptions): Promise<VerificationResult<TdxClaims>> {
  const trust = options.trust ?? VENDOR_TRUST;
  const checks = new Checks();
  const quote = parseTdxQuote(options.evidence);
  checks.pass('tdx.parse', `quote v${quote.version}, ${quote.bodyType === 3 ? 'TDX 1.5' : 'TDX 1.0'} body, ${quote.usedLength} of ${options.evidence.length} bytes used`);
  const root = parseCertificates(trust.intelRoot)[0]!;
  const chain: ChainEntry[] = [];

  let pckChain: ParsedCertificate[] = [];
  try {
    pckChain = parseCertificates(quote.pckChainPem);
  } catch (e) {
    if (!(e instanceof AttestError)) throw e;
  }
  const leaf = pckChain[0];
  let pck: PckTcb | undefined;
  if (pckChain.length === 0 || leaf === undefined) {
    checks.fail('tdx.pck-chain', 'E_ATTEST_CHAIN', 'the quote carries no PCK certificate chain');
  } else {
    const profile = pckChain.find((c) => c.sigAlg !== OID.ecdsaSha256 || c.curve !== OID.p256);
    const outcome = checkChain(pckChain, root.sha256, options.at, ['PCK certificate', 'PCK CA', 'Intel SGX Root CA']);
    if (!outcome.ok) checks.fail('tdx.pck-chain', outcome.code, outcome.detail);
    else if (pckChain.length !== 3) checks.fail('tdx.pck-chain', 'E_ATTEST_CHAIN', `PCK chain has ${pckChain.length} certificates (expected leaf, PCK CA, root)`);
    else if (profile !== undefined) checks.fail('tdx.pck-chain', 'E_ATTEST_CERT_PROFILE', `"${profile.subject}" is not ECDSA P-256 with SHA-256`);
    else checks.pass('tdx.pck-chain', outcome.detail);
    pckChain.forEach((c, i) => chain.push(chainEntry(['pck', 'pck-ca', 'root'][i] ?? `cert-${i}`, c)));
    try {
      pck = readPckTcb(leaf);
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('tdx.pck-extension', e.code, e.message);
    }
  }

  // QE report: signed by the PCK key (ECDSA P-256 SHA-256, r||s).
  if (leaf !== undefined) {
    let ok = false;
    try {
      ok = verify('sha256', quote.qeReport.raw, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, quote.qeReportSignature);
    } catch {
      ok = false;
    }
    checks.expect('tdx.qe-report-signature', ok, 'E_ATTEST_SIGNATURE', 'QE report signature verifies with the PCK key', 'QE report signature does not verify with the PCK key');
  } else checks.skip('tdx.qe-report-signature', 'no PCK certificate');

  const binding = createHash('sha256').update(quote.attestationKey).update(quote.qeAuthData).digest();
  checks.expect(
    'tdx.qe-binding',
    bytesEqual(quote.qeReport.reportData.subarray(0, 32), binding) && isZero(quote.qeReport.reportData.subarray(32)),
    'E_ATTEST_QE_BINDING',
    'QE REPORT_DATA = SHA-256(attestation key || QE auth data)',
    'QE REPORT_DATA does not bind the attestation key',
  );

  let quoteOk = false;
  try {
    quoteOk = verify('sha256', quote.signed, { key: rawP256(quote.attestationKey), dsaEncoding: 'ieee-p1363' }, quote.signature);
  } catch {
    quoteOk = false;
  }
  checks.expect('tdx.quote-signature', quoteOk, 'E_ATTEST_SIGNATURE', 'quote signature over header and TD report verifies with the attestation key', 'quote signature does not verify with the attestation key');

  // Collateral: supplied, or fetched from PCS when allowed.
  let collateral = options.collateral;
  if ((collateral?.tcbInfo === undefined || collateral.qeIdentity === undefined) && options.fetcher !== undefined && pck !== undefined) {
    try {
      collateral = { ...(await fetchCollateral(options.fetcher, pck.fmspc)), ...collateral };
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('tdx.collateral-fetch', e.code, e.message);
    }
  }
  if (options.fetcher !== undefined && pckChain[1] !== undefined && (collateral?.pckCrl === undefined || collateral.rootCrl === undefined)) {
    // Intel PCS v4 PCK CRL (platform or processor CA) and the root CA's CRL (Intel SGX PCK Certificate and
    // CRL Profile); DER encoding.
    const ca = /Processor/i.test(pckChain[1].subject) ? 'processor' : 'platform';
    try {
      const pckCrl = collateral?.pckCrl ?? (await options.fetcher.get(`https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=${ca}&encoding=der`)).body;
      const rootCrl = collateral?.rootCrl ?? (await options.fetcher.get('https://certificates.trustedservices.intel.com/IntelSGXRootCA.der')).body;
      collateral = { ...collateral, pckCrl, rootCrl };
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('tdx.crl-fetch', e.code, e.message);
    }
  }
  let tcbStatus: TdxTcbStatus | undefined;
  let qeTcbStatus: TdxTcbStatus | undefined;
  let tcbDate: string | undefined;
  let advisoryIds: readonly string[] = [];
  if (collateral?.rootCrl !== undefined || collateral?.pckCrl !== undefined) {
    const problems: Array<[Parameters<Checks['fail']>[1], string]> = [];
    const inter = pckChain[1];
    try {
      if (collateral.rootCrl !== undefined) {
        const crl = parseCrl(collateral.rootCrl);
        if (!crlSignedBy(crl, root)) problems.push(['E_ATTEST_CRL', 'root CRL is not signed by the Intel SGX Root CA']);
        else if (inter !== undefined && crl.revoked.has(inter.serialHex)) problems.push(['E_ATTEST_REVOKED', 'the PCK CA is revoked by the root CRL']);
        else if (crl.thisUpdate > options.at || (crl.nextUpdate !== undefined && crl.nextUpdate < options.at)) problems.push(['E_ATTEST_CERT_EXPIRED', `root CRL is valid ${crl.thisUpdate.toISOString()} to ${crl.nextUpdate?.toISOString()}`]);
      }
      if (collateral.pckCrl !== undefined) {
        const crl = parseCrl(collateral.pckCrl);
        if (inter === undefined || !crlSignedBy(crl, inter)) problems.push(['E_ATTEST_CRL', 'PCK CRL is not signed by the PCK CA of this quote']);
        else if (leaf !== undefined && crl.revoked.has(leaf.serialHex)) problems.push(['E_ATTEST_REVOKED', 'the PCK certificate is revoked by the PCK CRL']);
        else if (crl.thisUpdate > options.at || (crl.nextUpdate !== undefined && crl.nextUpdate < options.at)) problems.push(['E_ATTEST_CERT_EXPIRED', `PCK CRL is valid ${crl.thisUpdate.toISOString()} to ${crl.nextUpdate?.toISOString()}`]);
      }
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      problems.push([e.code, e.message]);
    }
    if (problems.length > 0) checks.fail('tdx.crl', problems[0]![0], problems.map((p) => p[1]).join('; '));
    else checks.pass('tdx.crl', 'PCK certificate and PCK CA are not revoked');
  } else checks.skip('tdx.crl', 'no CRL supplied');

  const signerFor = (pem: string | undefined, id: string): ParsedCertificate | undefined => {
    if (pem === undefined) {
      checks.fail(id, 'E_ATTEST_COLLATERAL', 'no issuer chain (TCB signing certificate) supplied for the collateral');
      return undefined;
    }
    const certs = parseCertificates(pem);
    const withRoot = certs[certs.length - 1]?.sha256 === root.sha256 ? certs : [...certs, root];
    const outcome = checkChain(withRoot, root.sha256, options.at, ['Intel SGX TCB Signing', 'Intel SGX Root CA']);
    if (!outcome.ok) {
      checks.fail(id, outcome.code, `collateral issuer: ${outcome.detail}`);
      return undefined;
    }
    return withRoot[0];
  };
  const fresh = (issueDate: string, nextUpdate: string) => Date.parse(issueDate) <= options.at.getTime() && options.at.getTime() <= Date.parse(nextUpdate);

  if (collateral?.tcbInfo !== undefined && pck !== undefined) {
    let problem: [Parameters<Checks['fail']>[1], string] | undefined;
    try {
      const info = parseTdxTcbInfo(collateral.tcbInfo);
      const eval_ = evaluateTdxTcb(info.body, quote, pck);
      tcbStatus = eval_.status;
      tcbDate = eval_.tcbDate;
      advisoryIds = eval_.advisoryIds;
      const signer = signerFor(collateral.tcbInfoIssuerChain, 'tdx.tcb-info');
      if (signer !== undefined) {
        if (!collateralSignedBy(info, signer)) problem = ['E_ATTEST_COLLATERAL', 'TCB info signature does not verify with the Intel TCB signing key'];
        else if (info.body.fmspc.toLowerCase() !== pck.fmspc || info.body.pceId.toLowerCase() !== pck.pceId) problem = ['E_ATTEST_COLLATERAL', `TCB info is for FMSPC ${info.body.fmspc}, the PCK certificate says ${pck.fmspc}`];
        else if (!fresh(info.body.issueDate, info.body.nextUpdate)) problem = ['E_ATTEST_CERT_EXPIRED', `TCB info is valid ${info.body.issueDate} to ${info.body.nextUpdate}, not at ${options.at.toISOString()}`];
        if (problem) checks.fail('tdx.tcb-info', problem[0], problem[1]);
        else checks.pass('tdx.tcb-info', `TCB info for FMSPC ${info.body.fmspc} (evaluation data ${info.body.tcbEvaluationDataNumber}) signed by Intel`);
      }
      const accepted = options.acceptedTcbStatuses ?? ['UpToDate'];
      if (eval_.status === undefined) checks.fail('tdx.tcb-status', 'E_ATTEST_TCB_STATUS', eval_.problem ?? 'no matching TCB level found');
      else checks.expect('tdx.tcb-status', accepted.includes(eval_.status), 'E_ATTEST_TCB_STATUS', `TCB status ${eval_.status} (level of ${eval_.tcbDate})`, `TCB status ${eval_.status} is not accepted (accepted: ${accepted.join(', ')})`);
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('tdx.tcb-info', e.code, e.message);
    }
  } else checks.skip('tdx.tcb-status', 'no TCB info supplied');

  if (collateral?.qeIdentity !== undefined) {
    try {
      const identity = parseTdxQeIdentity(collateral.qeIdentity);
      const signer = signerFor(collateral.qeIdentityIssuerChain ?? collateral.tcbInfoIssuerChain, 'tdx.qe-identity');
      if (signer !== undefined) {
        const qe = evaluateQeIdentity(identity.body, quote);
        qeTcbStatus = qe.status;
        if (!collateralSignedBy(identity, signer)) checks.fail('tdx.qe-identity', 'E_ATTEST_COLLATERAL', 'QE identity signature does not verify with the Intel TCB signing key');
        else if (!fresh(identity.body.issueDate, identity.body.nextUpdate)) checks.fail('tdx.qe-identity', 'E_ATTEST_CERT_EXPIRED', `QE identity is valid ${identity.body.issueDate} to ${identity.body.nextUpdate}, not at ${options.at.toISOString()}`);
        else if (qe.status === undefined) checks.fail('tdx.qe-identity', 'E_ATTEST_QE_IDENTITY', qe.problem!);
        else if (qe.status === 'Revoked' || qe.status === 'OutOfDate') checks.fail('tdx.qe-identity', 'E_ATTEST_QE_IDENTITY', `QE TCB status ${qe.status}`);
        else checks.pass('tdx.qe-identity', `QE matches Intel's TD_QE identity, ISVSVN ${quote.qeReport.isvSvn}: ${qe.status}`);
      }
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('tdx.qe-identity', e.code, e.message);
    }
  } else checks.skip('tdx.qe-identity', 'no QE identity supplied');

  if (options.nonce !== undefined) {
    const n = options.nonce;
    if (n.length > 64) throw new RangeError(`"nonce" expected at most 64 bytes, got ${n.length}`);
    const rd = quote.body.reportData;
    checks.expect('tdx.nonce', bytesEqual(rd.subarray(0, n.length), n) && isZero(rd.subarray(n.length)), 'E_ATTEST_NONCE', 'REPORT_DATA carries the expected nonce', 'REPORT_DATA does not carry the expected nonce');
  } else checks.skip('tdx.nonce', 'no expected nonce given');

  return {
    type: 'tdx',
    ok: checks.ok,
    checks: checks.list,
    failure: checks.failure,
    claims: tdxClaims(quote, pck, tcbStatus, qeTcbStatus, tcbDate, advisoryIds),
    chain,
    at: options.at.toISOString(),
    trust: trust.label,
  };
}

function tdxClaims(q: TdxQuote, pck: PckTcb | undefined, tcbStatus: TdxTcbStatus | undefined, qeTcbStatus: TdxTcbStatus | undefined, tcbDate: string | undefined, advisoryIds: readonly string[]): TdxClaims {
  const b = q.body;
  return {
    version: q.version,
    bodyType: q.bodyType === 3 ? 'TDX 1.5' : 'TDX 1.0',
    teeTcbSvn: hex(b.teeTcbSvn),
    mrSeam: hex(b.mrSeam),
    mrSignerSeam: hex(b.mrSignerSeam),
    seamAttributes: hex(b.seamAttributes),
    tdAttributes: hex(b.tdAttributes),
    // TDX module spec, TDINFO_STRUCT ATTRIBUTES: bit 0 DEBUG (the host may read and write TD memory).
    debug: (b.tdAttributes[0]! & 1) === 1,
    xfam: hex(b.xfam),
    mrTd: hex(b.mrTd),
    mrConfigId: hex(b.mrConfigId),
    mrOwner: hex(b.mrOwner),
    mrOwnerConfig: hex(b.mrOwnerConfig),
    rtmrs: b.rtmrs.map(hex),
    reportData: hex(b.reportData),
    ...(b.teeTcbSvn2 !== undefined ? { teeTcbSvn2: hex(b.teeTcbSvn2) } : {}),
    ...(b.mrServiceTd !== undefined ? { mrServiceTd: hex(b.mrServiceTd) } : {}),
    qe: { mrEnclave: hex(q.qeReport.mrEnclave), mrSigner: hex(q.qeReport.mrSigner), isvProdId: q.qeReport.isvProdId, isvSvn: q.qeReport.isvSvn },
    pck,
    tcbStatus,
    qeTcbStatus,
    tcbDate,
    advisoryIds,
    quoteLength: q.usedLength,
  };
}
