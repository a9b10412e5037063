import { createHash, verify } from 'node:crypto';
import { AttestError, parseStrictJson } from '@flare/core';
import { bytesEqual, hex, isZero, Reader } from '../bytes.js';
import { chainEntry, checkChain, parseCertificates, type ChainEntry, type ParsedCertificate } from '../cert.js';
import { Checks } from '../check.js';
import { crlSignedBy, parseCrl } from '../crl.js';
import type { CollateralFetcher } from '../fetcher.js';
import type { VerificationResult } from '../result.js';
import { VENDOR_TRUST, type TrustAnchors } from '../trust.js';
import { parseSnpReport, reportTcbs, SNP_REPORT_SIZE, type SnpReport } from './report.js';
import { tcbComponents, type SnpProduct, type SnpTcb } from './tcb.js';
import { checkAmdPss, readAmdKeyCertificate, type AmdKeyCertificate } from './vcek.js';

/** Inputs of {@link verifySnpEvidence}. */
export interface SnpVerifyOptions {
  /** The 1184-byte ATTESTATION_REPORT, or an Azure HCL report ("HCLA" header) that wraps one. */
  readonly evidence: Uint8Array;
  /** VCEK or VLEK, and optionally ASK/ASVK and ARK, as PEM text or DER, in any order. */
  readonly certificates?: ReadonlyArray<Uint8Array | string>;
  /** An ARK-signed CRL (DER) from KDS `/vcek/v1/<product>/crl`; when given, ASK and VCEK must not be listed. */
  readonly crl?: Uint8Array;
  /** The expected REPORT_DATA (up to 64 bytes; shorter values must be followed by zeros in the report). */
  readonly nonce?: Uint8Array;
  /** The verification time. Required: certificate validity depends on it. */
  readonly at: Date;
  /** The expected product; otherwise taken from the VCEK and checked against the report's CPUID. */
  readonly product?: SnpProduct;
  /**
   * The expected machine stepping (go-sev-guest `Product.MachineStepping`): the CPUID stepping of v3+ reports,
   * else the digit of the VCEK product name's stepping suffix ("Milan-B0" -> 0, "Milan-B1" -> 1).
   */
  readonly stepping?: number;
  /** Allows fetching a missing VCEK, and the ARK CRL when none is supplied, from AMD KDS. */
  readonly fetcher?: CollateralFetcher;
  /** Trust anchors (default: the pinned AMD roots). */
  readonly trust?: TrustAnchors;
}

/** Claims of an SNP result: every report field, byte strings as hex. */
export interface SnpClaims {
  readonly version: number;
  readonly product: SnpProduct | undefined;
  readonly guestSvn: number;
  readonly policy: string;
  readonly debug: boolean;
  readonly migrateMa: boolean;
  readonly smt: boolean;
  readonly singleSocket: boolean;
  readonly abiMajor: number;
  readonly abiMinor: number;
  readonly familyId: string;
  readonly imageId: string;
  readonly vmpl: number;
  readonly signatureAlgo: number;
  readonly platformInfo: string;
  readonly signingKey: 'vcek' | 'vlek' | 'none';
  readonly maskChipKey: boolean;
  readonly authorKeyEn: boolean;
  readonly reportData: string;
  readonly measurement: string;
  readonly hostData: string;
  readonly idKeyDigest: string;
  readonly authorKeyDigest: string;
  readonly reportId: string;
  readonly reportIdMa: string;
  readonly chipId: string;
  readonly cpuid: { readonly family: number; readonly model: number; readonly stepping: number } | undefined;
  readonly currentTcb: SnpTcb | string;
  readonly reportedTcb: SnpTcb | string;
  readonly committedTcb: SnpTcb | string;
  readonly launchTcb: SnpTcb | string;
  readonly currentVersion: string;
  readonly committedVersion: string;
  readonly launchMitVector: string;
  readonly currentMitVector: string;
  /** The VCEK/VLEK's certified TCB and product, when a key certificate was found. */
  readonly keyCertificate: { readonly kind: 'vcek' | 'vlek'; readonly productName: string; readonly tcb: AmdKeyCertificate['tcb']; readonly cspId?: string } | undefined;
  /** Azure HCL runtime data (JSON text) when the evidence was an HCL report. */
  readonly hclRuntimeData?: string;
}

/** An Azure HCL report (trustee az-snp-vtpm): 32-byte header, the SNP report at 0x20, runtime data at 0x4C0. */
interface HclReport {
  readonly report: Uint8Array;
  readonly runtimeData: Uint8Array;
}

function parseHcl(bytes: Uint8Array): HclReport | undefined {
  if (bytes.length < 4 || Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== 'HCLA') return undefined;
  const r = new Reader(bytes, 'HCL report');
  const report = r.slice(0x20, SNP_REPORT_SIZE);
  // Runtime-data header: data_size, version, report_type (2 = SNP), hash_type (1 = SHA-256), variable_data_size.
  if (r.u32(0x4c0 + 8) !== 2) throw new AttestError('E_ATTEST_MALFORMED', 'HCL report does not hold an SNP report');
  if (r.u32(0x4c0 + 12) !== 1) throw new AttestError('E_ATTEST_UNSUPPORTED', 'HCL runtime data hash is not SHA-256');
  const size = r.u32(0x4c0 + 16);
  return { report, runtimeData: r.slice(0x4c0 + 20, size) };
}

function findKeyCert(certs: readonly ParsedCertificate[]): ParsedCertificate | undefined {
  return certs.find((c) => /(?:^|, )CN=SEV-V(?:C|L)EK(?:,|$)/.test(c.subject));
}

const productUrl = (p: SnpProduct) => p;

/** The machine stepping: CPUID (v3+) or the VCEK product name suffix digit (go-sev-guest kds.ParseProductName). */
function stepping(report: SnpReport, amd: AmdKeyCertificate | undefined): number | undefined {
  if (report.cpuid !== undefined) return report.cpuid.stepping;
  const m = /-[A-Z](\d)$/.exec(amd?.productName ?? '');
  return m === null ? undefined : Number(m[1]);
}

function version(v: { major: number; minor: number; build: number }): string {
  return `${v.major}.${v.minor}.${v.build}`;
}

/**
 * Verifies SEV-SNP evidence offline: the report parses; the VCEK (or VLEK) has the KDS profile and chains
 * VCEK <- ASK <- ARK (VLEK <- ASVK <- ARK), RSASSA-PSS SHA-384, to the pinned ARK of its product; the
 * report's SIGNING_KEY matches the certificate type; the ECDSA P-384 report signature verifies; the
 * certificate's TCB equals REPORTED_TCB (with FMC on Turin); its hwID equals CHIP_ID (VCEK, unless masked;
 * 8 bytes on Turin); optionally the ARK-signed CRL and the expected nonce. Every check is reported; the
 * result is ok only when none failed.
 *
 * @example
 * ```ts
 * const r = await verifySnpEvidence({ evidence: report, certificates: [vcekDer], nonce, at: new Date() });
 * if (!r.ok) throw new AttestError(r.failure!.code!, r.failure!.detail);
 * ```
 */
export async function verifySnpEvidence(options: SnpVerifyOptions): Promise<VerificationResult<SnpClaims>> {
  const trust = options.trust ?? VENDOR_TRUST;
  const checks = new Checks();
  const hcl = parseHcl(options.evidence);
  const report = parseSnpReport(hcl?.report ?? options.evidence);
  checks.pass('snp.parse', `report version ${report.version}, ${report.signingKey.toUpperCase()}-signed, VMPL ${report.vmpl}`);

  // Certificates: supplied ones first, then the bundled intermediates, then (only if allowed) AMD KDS.
  let supplied = (options.certificates ?? []).flatMap((c) => parseCertificates(c));
  let keyCert = findKeyCert(supplied);
  let product = options.product ?? report.cpuidProduct;
  if (keyCert === undefined && options.fetcher !== undefined && report.signingKey === 'vcek') {
    if (product === undefined) throw new AttestError('E_ATTEST_FETCH', 'cannot fetch the VCEK of a v2 report without a product; pass the product or the VCEK');
    const tcb = reportTcbs(report, product).reported;
    const id = product === 'Turin' ? report.chipId.subarray(0, 8) : report.chipId;
    const q = `${product === 'Turin' ? `fmcSPL=${tcb.fmc}&` : ''}blSPL=${tcb.bootloader}&teeSPL=${tcb.tee}&snpSPL=${tcb.snp}&ucodeSPL=${tcb.microcode}`;
    // KDS interface spec 57230: /vcek/v1/{product}/{hwid}?{spl} (go-sev-guest kds.VCEKCertURL).
    let der: Uint8Array = new Uint8Array(0);
    try {
      der = (await options.fetcher.get(`https://kdsintf.amd.com/vcek/v1/${productUrl(product)}/${hex(id)}?${q}`)).body;
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('snp.fetch', e.code, e.message);
    }
    if (der.length > 0) supplied = [...supplied, ...parseCertificates(der)];
    keyCert = findKeyCert(supplied);
  }
  let amd: AmdKeyCertificate | undefined;
  const chain: ChainEntry[] = [];
  if (keyCert === undefined) {
    checks.fail('snp.key-certificate', report.signingKey === 'none' ? 'E_ATTEST_SIGNING_KEY' : 'E_ATTEST_FETCH', 'no VCEK or VLEK certificate was supplied for this report');
  } else {
    try {
      amd = readAmdKeyCertificate(keyCert);
      checks.pass('snp.key-certificate', `${amd.kind.toUpperCase()} for ${amd.productName}, KDS profile ok (RSASSA-PSS SHA-384, ECDSA P-384)`);
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('snp.key-certificate', e.code, e.message);
    }
  }

  // Product: the VCEK names it; a v3+ report's CPUID must agree; a caller's expectation must agree with both.
  const certProduct = amd?.product;
  if (certProduct !== undefined && report.cpuidProduct !== undefined && certProduct !== report.cpuidProduct) {
    checks.fail('snp.product', 'E_ATTEST_PRODUCT', `report CPUID says ${report.cpuidProduct}, certificate says ${certProduct}`);
  } else if (options.product !== undefined && (certProduct ?? report.cpuidProduct) !== options.product) {
    checks.fail('snp.product', 'E_ATTEST_PRODUCT', `expected product ${options.product}, evidence is ${certProduct ?? report.cpuidProduct ?? 'unknown'}`);
  } else if (certProduct === undefined && report.cpuidProduct === undefined) {
    checks.fail('snp.product', 'E_ATTEST_PRODUCT', 'product unknown: a v2 report needs its VCEK (or an expected product)');
  } else if (options.stepping !== undefined && stepping(report, amd) !== options.stepping) {
    checks.fail('snp.product', 'E_ATTEST_PRODUCT', `expected product stepping ${options.stepping}, got ${stepping(report, amd) ?? 'unknown'}`);
  } else {
    product = certProduct ?? report.cpuidProduct;
    checks.pass('snp.product', `${product}${report.cpuid ? ` (CPUID family 0x${report.cpuid.family.toString(16)} model 0x${report.cpuid.model.toString(16)} stepping ${report.cpuid.stepping})` : ''}`);
  }

  // Chain: VCEK <- ASK <- ARK or VLEK <- ASVK <- ARK, ending at the pinned ARK of the product.
  if (keyCert !== undefined && amd !== undefined && product !== undefined) {
    const ark = parseCertificates(trust.amdArk[product])[0]!;
    const interName = amd.kind === 'vcek' ? `SEV-${product}` : `SEV-VLEK-${product}`;
    const pool = [...supplied, ...trust.amdIntermediates.flatMap((p) => parseCertificates(p))];
    const inter = pool.find((c) => c.subject.includes(`CN=${interName}`) && c.sha256 !== ark.sha256 && Buffer.compare(keyCert.issuerDer, c.subjectDer) === 0);
    const arkSupplied = supplied.find((c) => /CN=ARK-/.test(c.subject));
    if (arkSupplied !== undefined && arkSupplied.sha256 !== ark.sha256) {
      checks.fail('snp.chain', 'E_ATTEST_CHAIN', `the supplied ARK "${arkSupplied.subject}" is not the pinned ARK-${product}`);
    } else if (inter === undefined) {
      checks.fail('snp.chain', 'E_ATTEST_CHAIN', `no ${interName} certificate issued the ${amd.kind.toUpperCase()}`);
    } else {
      let profile: string | undefined;
      try {
        checkAmdPss(inter, interName);
        checkAmdPss(ark, `ARK-${product}`);
      } catch (e) {
        if (!(e instanceof AttestError)) throw e;
        profile = e.message;
      }
      if (profile !== undefined) checks.fail('snp.chain', 'E_ATTEST_CERT_PROFILE', profile);
      else {
        const outcome = checkChain([keyCert, inter, ark], ark.sha256, options.at, [amd.kind.toUpperCase(), amd.kind === 'vcek' ? 'ASK' : 'ASVK', 'ARK']);
        if (outcome.ok) checks.pass('snp.chain', outcome.detail);
        else checks.fail('snp.chain', outcome.code, outcome.detail);
      }
      chain.push(chainEntry(amd.kind, keyCert), chainEntry(amd.kind === 'vcek' ? 'ask' : 'asvk', inter), chainEntry('ark', ark));

      let crlBytes = options.crl;
      if (crlBytes === undefined && options.fetcher !== undefined && amd.kind === 'vcek') {
        // KDS interface spec 57230: the ARK-signed CRL of the product's ASKs and VCEKs.
        try {
          crlBytes = (await options.fetcher.get(`https://kdsintf.amd.com/vcek/v1/${product}/crl`)).body;
        } catch (e) {
          if (!(e instanceof AttestError)) throw e;
          checks.fail('snp.crl', e.code, e.message);
        }
      }
      if (crlBytes !== undefined) {
        try {
          const crl = parseCrl(crlBytes);
          if (!crlSignedBy(crl, ark)) checks.fail('snp.crl', 'E_ATTEST_CRL', `the CRL is not signed by ARK-${product}`);
          else if (crl.thisUpdate > options.at || (crl.nextUpdate !== undefined && crl.nextUpdate < options.at)) {
            checks.fail('snp.crl', 'E_ATTEST_CERT_EXPIRED', `the CRL is valid ${crl.thisUpdate.toISOString()} to ${crl.nextUpdate?.toISOString() ?? '(open)'}, not at ${options.at.toISOString()}`);
          } else if (crl.revoked.has(inter.serialHex) || crl.revoked.has(keyCert.serialHex)) {
            checks.fail('snp.crl', 'E_ATTEST_REVOKED', `${crl.revoked.has(inter.serialHex) ? interName : amd.kind.toUpperCase()} serial is revoked by the ARK CRL`);
          } else checks.pass('snp.crl', `not revoked (CRL of ${crl.thisUpdate.toISOString()}, ${crl.revoked.size} entries)`);
        } catch (e) {
          if (!(e instanceof AttestError)) throw e;
          checks.fail('snp.crl', e.code, e.message);
        }
      } else if (!checks.list.some((c) => c.id === 'snp.crl')) checks.skip('snp.crl', 'no CRL supplied');
    }
  } else checks.skip('snp.chain', 'no usable key certificate or product');

  // SIGNING_KEY (signer info bits 2-4) must name the certificate type that verifies the report.
  if (amd !== undefined) {
    checks.expect('snp.signing-key', report.signingKey === amd.kind, 'E_ATTEST_SIGNING_KEY', `report declares ${report.signingKey.toUpperCase()}, certificate is a ${amd.kind.toUpperCase()}`, `report declares ${report.signingKey.toUpperCase()} but the certificate is a ${amd.kind.toUpperCase()}`);
  } else checks.skip('snp.signing-key', 'no key certificate');

  // ABI 56860: ECDSA P-384 with SHA-384 over report[0x000..0x2A0); r and s converted to IEEE P1363.
  if (keyCert !== undefined) {
    let ok = false;
    try {
      ok = verify('sha384', report.signed, { key: keyCert.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.concat([report.signatureR, report.signatureS]));
    } catch {
      ok = false;
    }
    checks.expect('snp.report-signature', ok, 'E_ATTEST_SIGNATURE', 'ECDSA P-384 SHA-384 signature over bytes 0x000-0x29F verifies with the key certificate', 'the report signature does not verify with the key certificate');
  } else checks.skip('snp.report-signature', 'no key certificate');

  const tcbs = product !== undefined ? reportTcbs(report, product) : undefined;
  if (amd !== undefined && tcbs !== undefined) {
    // Compare with REPORTED_TCB (the TCB the VCEK is derived for), not CURRENT_TCB (trustee test-report differs).
    const certTcb: SnpTcb = { ...amd.tcb, raw: '' };
    const diff = tcbComponents(tcbs.reported).filter(([k, v]) => (certTcb as unknown as Record<string, number | undefined>)[k] !== v);
    checks.expect('snp.tcb', diff.length === 0, 'E_ATTEST_TCB_MISMATCH', `certificate TCB equals REPORTED_TCB ${tcbs.reported.raw}`, `certificate TCB differs from REPORTED_TCB in ${diff.map(([k, v]) => `${k} (report ${v}, certificate ${(certTcb as unknown as Record<string, number | undefined>)[k]})`).join(', ')}`);
    const above = tcbComponents(tcbs.reported).filter(([k, v]) => v > ((tcbs.current as unknown as Record<string, number>)[k] ?? 0));
    checks.expect('snp.tcb-current', above.length === 0, 'E_ATTEST_TCB_MISMATCH', 'REPORTED_TCB does not exceed CURRENT_TCB', `REPORTED_TCB exceeds CURRENT_TCB in ${above.map(([k]) => k).join(', ')}`);
  } else {
    checks.skip('snp.tcb', 'no key certificate or product');
  }

  if (amd?.kind === 'vcek') {
    if (report.maskChipKey) checks.skip('snp.chip-id', 'MASK_CHIP_KEY is set: CHIP_ID is not reported');
    else {
      const hw = amd.hwId!;
      // Turin: the hwID and the used part of CHIP_ID are 8 bytes; the other 56 bytes of CHIP_ID are zero.
      const ok = hw.length === 8 ? bytesEqual(report.chipId.subarray(0, 8), hw) && isZero(report.chipId.subarray(8)) : bytesEqual(report.chipId, hw);
      checks.expect('snp.chip-id', ok, 'E_ATTEST_CHIP_ID', `CHIP_ID equals the VCEK hwID (${hw.length} bytes, ${amd.hwIdEncoding} encoding)`, 'CHIP_ID differs from the VCEK hwID');
    }
  } else if (amd?.kind === 'vlek') {
    checks.skip('snp.chip-id', `VLEK for CSP ${JSON.stringify(amd.cspId)}: no hwID to compare`);
  } else checks.skip('snp.chip-id', 'no key certificate');

  let hclRuntimeData: string | undefined;
  if (hcl !== undefined) {
    hclRuntimeData = Buffer.from(hcl.runtimeData).toString('utf8');
    // Azure HCL binding: REPORT_DATA[0:32] = SHA-256(runtime data), [32:64] zero (trustee az-snp-vtpm).
    const digest = createHash('sha256').update(hcl.runtimeData).digest();
    checks.expect('snp.hcl-binding', bytesEqual(report.reportData.subarray(0, 32), digest) && isZero(report.reportData.subarray(32)), 'E_ATTEST_NONCE', 'REPORT_DATA binds the HCL runtime data (SHA-256)', 'REPORT_DATA does not bind the HCL runtime data');
  }

  if (options.nonce !== undefined) {
    const n = options.nonce;
    if (n.length > 64) throw new RangeError(`"nonce" expected at most 64 bytes, got ${n.length}`);
    let ok: boolean;
    if (hcl !== undefined) {
      // For HCL evidence the caller's nonce is the runtime JSON's user-data (hex), bound through the hash above.
      const json = parseStrictJson(hclRuntimeData!) as Record<string, unknown>;
      const user = typeof json['user-data'] === 'string' ? json['user-data'].toLowerCase() : '';
      ok = user.startsWith(hex(n)) && /^0*$/.test(user.slice(hex(n).length));
    } else ok = bytesEqual(report.reportData.subarray(0, n.length), n) && isZero(report.reportData.subarray(n.length));
    checks.expect('snp.nonce', ok, 'E_ATTEST_NONCE', 'REPORT_DATA carries the expected nonce', 'REPORT_DATA does not carry the expected nonce');
  } else checks.skip('snp.nonce', 'no expected nonce given');

  return {
    type: 'snp',
    ok: checks.ok,
    checks: checks.list,
    failure: checks.failure,
    claims: snpClaims(report, product, amd, hclRuntimeData),
    chain,
    at: options.at.toISOString(),
    trust: trust.label,
  };
}

function snpClaims(r: SnpReport, product: SnpProduct | undefined, amd: AmdKeyCertificate | undefined, hclRuntimeData: string | undefined): SnpClaims {
  const raw = (v: bigint) => v.toString(16).padStart(16, '0');
  const t = product !== undefined ? reportTcbs(r, product) : undefined;
  return {
    version: r.version,
    product,
    guestSvn: r.guestSvn,
    policy: raw(r.policy),
    debug: r.guestPolicy.debug,
    migrateMa: r.guestPolicy.migrateMa,
    smt: r.guestPolicy.smt,
    singleSocket: r.guestPolicy.singleSocket,
    abiMajor: r.guestPolicy.abiMajor,
    abiMinor: r.guestPolicy.abiMinor,
    familyId: hex(r.familyId),
    imageId: hex(r.imageId),
    vmpl: r.vmpl,
    signatureAlgo: r.signatureAlgo,
    platformInfo: raw(r.platformInfo),
    signingKey: r.signingKey,
    maskChipKey: r.maskChipKey,
    authorKeyEn: r.authorKeyEn,
    reportData: hex(r.reportData),
    measurement: hex(r.measurement),
    hostData: hex(r.hostData),
    idKeyDigest: hex(r.idKeyDigest),
    authorKeyDigest: hex(r.authorKeyDigest),
    reportId: hex(r.reportId),
    reportIdMa: hex(r.reportIdMa),
    chipId: hex(r.chipId),
    cpuid: r.cpuid,
    currentTcb: t?.current ?? raw(r.currentTcbRaw),
    reportedTcb: t?.reported ?? raw(r.reportedTcbRaw),
    committedTcb: t?.committed ?? raw(r.committedTcbRaw),
    launchTcb: t?.launch ?? raw(r.launchTcbRaw),
    currentVersion: version(r.currentVersion),
    committedVersion: version(r.committedVersion),
    launchMitVector: raw(r.launchMitVector),
    currentMitVector: raw(r.currentMitVector),
    keyCertificate: amd === undefined ? undefined : { kind: amd.kind, productName: amd.productName, tcb: amd.tcb, ...(amd.cspId !== undefined ? { cspId: amd.cspId } : {}) },
    ...(hclRuntimeData !== undefined ? { hclRuntimeData } : {}),
  };
}
