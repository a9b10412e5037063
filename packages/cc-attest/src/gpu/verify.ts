import { verify } from 'node:crypto';
import { AttestError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { bytesEqual, hex } from '../bytes.js';
import { chainEntry, checkChain, OID, parseCertificates, signedBy, type ChainEntry, type ParsedCertificate } from '../cert.js';
import { Checks } from '../check.js';
import { children, readTlv, TAG } from '../der.js';
import type { CollateralFetcher } from '../fetcher.js';
import type { VerificationResult } from '../result.js';
import { VENDOR_TRUST, type TrustAnchors } from '../trust.js';
import { ocspCheckChain } from './ocsp.js';
import { checkRim, type Rim } from './rim.js';
import { describeOpaque, parseSpdmEvidence, type SpdmEvidence } from './spdm.js';

/** GPU architectures whose evidence this package verifies. */
export type GpuArch = 'HOPPER' | 'BLACKWELL' | 'LS10';

/** Inputs of {@link verifyGpuEvidence}. */
export interface GpuVerifyOptions {
  /** SPDM GET_MEASUREMENTS request || response, as NVML returns it. */
  readonly evidence: Uint8Array;
  /** The device certificate chain (PEM, leaf first), from nvmlDeviceGetConfComputeGpuCertificate. */
  readonly certificates: ReadonlyArray<Uint8Array | string>;
  /** The expected 32-byte SPDM request nonce. */
  readonly nonce?: Uint8Array;
  /** Driver and VBIOS RIMs (SWID XML). Without them, measurements are not compared (and a policy requiring RIMs fails). */
  readonly rims?: readonly string[];
  /** Driver and VBIOS versions reported by NVML; when given they must equal the evidence's. */
  readonly reported?: { readonly driverVersion?: string; readonly vbiosVersion?: string };
  readonly at: Date;
  /** RIM indices whose mismatch is tolerated (a relying-party policy decision, as in NVIDIA's rego examples). */
  readonly allowedMismatchIndices?: readonly number[];
  /** Allows fetching RIMs from the NVIDIA RIM service and OCSP checks with NVIDIA's responder. */
  readonly fetcher?: CollateralFetcher;
  /** OCSP-check the device and RIM signer certificates (default: true when a fetcher is given). */
  readonly ocsp?: boolean;
  readonly trust?: TrustAnchors;
}

/** Claims of a GPU result. */
export interface GpuClaims {
  readonly arch: GpuArch | undefined;
  readonly nonce: string;
  readonly responderNonce: string;
  readonly driverVersion: string | undefined;
  readonly vbiosVersion: string | undefined;
  readonly fwid: string | undefined;
  readonly opaque: Readonly<Record<string, string>>;
  /** SPDM block index -> measurement (hex). */
  readonly measurements: Readonly<Record<string, string>>;
  /** RIMs that verified: their tag id and version. */
  readonly rims: ReadonlyArray<{ readonly tagId: string; readonly version: string; readonly product: string | undefined }>;
  /** The RIM ids this evidence would be checked against (for fetching). */
  readonly rimIds: { readonly driver: string | undefined; readonly vbios: string | undefined };
  /** RIM indices whose runtime value matched no golden value. */
  readonly mismatchedIndices: readonly number[];
  readonly measurementsCompared: boolean;
}

/** Architecture from the leaf certificate's subject (GH100 / GB100 / LS_10). */
function archOf(leaf: ParsedCertificate | undefined): GpuArch | undefined {
  if (leaf === undefined) return undefined;
  if (/CN=GH100 /.test(leaf.subject)) return 'HOPPER';
  if (/CN=GB\d{3} /.test(leaf.subject)) return 'BLACKWELL';
  if (/CN=LS_10 /.test(leaf.subject)) return 'LS10';
  return undefined;
}

const DICE_TCB_INFO = '2.23.133.5.4.1';
const DICE_TCB_INFO_BLACKWELL = '2.23.133.5.4.1.1';

/**
 * The first FWID digest of a GPU leaf certificate's (PEM or DER) TCG DICE TcbInfo (DICE Attestation Architecture, TcbInfo: fwids [6]
 * IMPLICIT SEQUENCE OF FWID { hashAlg, digest }). Hopper uses 2.23.133.5.4.1; Blackwell 2.23.133.5.4.1.1 with
 * two FWIDs and flags, so the structure is parsed rather than "the last 48 bytes" taken.
 */
export function certificateFwid(certificate: Uint8Array | string): Uint8Array | undefined {
  const leaf = parseCertificates(certificate)[0];
  return leaf === undefined ? undefined : fwidOf(leaf);
}

function fwidOf(leaf: ParsedCertificate): Uint8Array | undefined {
  const ext = leaf.extensions.get(DICE_TCB_INFO) ?? leaf.extensions.get(DICE_TCB_INFO_BLACKWELL);
  if (ext === undefined) return undefined;
  const isFwid = (t: { tag: number; value: Uint8Array }) => {
    if (t.tag !== TAG.SEQUENCE) return false;
    const [alg, digest] = children(t.value);
    return alg?.tag === TAG.OID && digest?.tag === TAG.OCTET_STRING;
  };
  const top = children(readTlv(ext).value);
  // DiceTcbInfo (Blackwell): fwids is [6]. Hopper's 2.23.133.5.4.1 is an older layout
  // SEQUENCE { INTEGER, SubjectPublicKeyInfo, FWID }: take the top-level FWID.
  const list = top.find((t) => t.tag === 0xa6);
  const fwid = (list === undefined ? top : children(list.value)).find(isFwid);
  return fwid === undefined ? undefined : children(fwid.value)[1]!.value;
}

/** RIM ids as NVIDIA's RIM service names them (nvtrust: driver NV_GPU_DRIVER_GH100_<ver>, VBIOS NV_GPU_VBIOS_<project>_<sku>_<chip sku>_<version>). */
function rimIds(e: SpdmEvidence, arch: GpuArch | undefined): { driver: string | undefined; vbios: string | undefined } {
  const o = describeOpaque(e);
  const driver = e.driverVersion === undefined || arch === undefined || arch === 'LS10' ? undefined : arch === 'HOPPER' ? `NV_GPU_DRIVER_GH100_${e.driverVersion}` : `NV_GPU_CC_DRIVER_GB100_${e.driverVersion}`;
  const vbios =
    e.vbiosVersion === undefined || o['PROJECT'] === undefined || o['PROJECT_SKU'] === undefined || o['CHIP_SKU'] === undefined
      ? undefined
      : `NV_GPU_VBIOS_${o['PROJECT']}_${o['PROJECT_SKU']}_${o['CHIP_SKU']}_${e.vbiosVersion.replace(/\./g, '').toUpperCase()}`;
  return { driver, vbios };
}

const RimResponse = z.object({ id: z.string(), rim: z.string().max(2 * 2 ** 20) }).loose();

async function fetchRim(fetcher: CollateralFetcher, id: string): Promise<string> {
  const { body } = await fetcher.get(`https://rim.attestation.nvidia.com/v1/rim/${encodeURIComponent(id)}`);
  const parsed = RimResponse.safeParse(parseStrictJson(Buffer.from(body).toString('utf8')));
  if (!parsed.success) throw new AttestError('E_ATTEST_FETCH', `the RIM service answer for ${id} has no "rim"`);
  return Buffer.from(parsed.data.rim, 'base64').toString('utf8');
}

/**
 * Verifies NVIDIA GPU (Hopper, Blackwell) or NVSwitch (LS10) evidence offline: the device chain ends at the
 * pinned NVIDIA Device Identity CA (nvtrust replaces the device-supplied root with its pinned one; here the
 * supplied last certificate must be the pinned root or be issued by it); every certificate is ECDSA P-384
 * and valid at `at`; the leaf's DICE FWID equals the opaque FWID (skipped when the report has none, as on
 * driver 535); the SPDM response signature verifies; the request nonce is the expected one; and, with RIMs,
 * every active golden measurement matches.
 */
export async function verifyGpuEvidence(options: GpuVerifyOptions): Promise<VerificationResult<GpuClaims>> {
  const trust = options.trust ?? VENDOR_TRUST;
  const checks = new Checks();
  const e = parseSpdmEvidence(options.evidence);
  checks.pass('gpu.parse', `SPDM 1.1 GET_MEASUREMENTS with ${e.blocks.length} measurement blocks, driver ${e.driverVersion ?? '?'}, VBIOS ${e.vbiosVersion ?? '?'}`);
  const root = parseCertificates(trust.nvidiaDeviceRoot)[0]!;
  const certs = options.certificates.flatMap((c) => parseCertificates(c));
  const leaf = certs[0];
  const arch = archOf(leaf);
  const chain: ChainEntry[] = [];

  let deviceChain = certs;
  const last = certs[certs.length - 1];
  if (last !== undefined && last.sha256 !== root.sha256 && signedBy(last, root)) deviceChain = [...certs, root];
  const names = ['device leaf (FMC LF)', 'device BROM', 'provisioner ICA', 'identity CA', 'NVIDIA Device Identity CA'];
  const outcome = checkChain(deviceChain, root.sha256, options.at, names);
  const profile = deviceChain.find((c) => c.sigAlg !== OID.ecdsaSha384 || c.curve !== OID.p384);
  if (!outcome.ok) checks.fail('gpu.chain', outcome.code, outcome.detail);
  else if (profile !== undefined) checks.fail('gpu.chain', 'E_ATTEST_CERT_PROFILE', `"${profile.subject}" is not ECDSA P-384 with SHA-384`);
  else if (arch === undefined) checks.fail('gpu.chain', 'E_ATTEST_UNSUPPORTED', `leaf "${leaf?.subject}" is not a GH100, GB100 or LS_10 device certificate`);
  else checks.pass('gpu.chain', outcome.detail);
  deviceChain.forEach((c, i) => chain.push(chainEntry(i === 0 ? 'leaf' : i === deviceChain.length - 1 ? 'root' : 'intermediate', c)));

  if (leaf !== undefined) {
    const certFwid = fwidOf(leaf);
    if (e.fwid === undefined) checks.skip('gpu.fwid', 'the evidence has no FWID (older driver)');
    else if (certFwid === undefined) checks.fail('gpu.fwid', 'E_ATTEST_FWID', 'the leaf certificate has no DICE TcbInfo FWID (is the signing certificate missing?)');
    else checks.expect('gpu.fwid', bytesEqual(certFwid, e.fwid), 'E_ATTEST_FWID', 'opaque FWID equals the leaf certificate FWID', `opaque FWID ${hex(e.fwid).slice(0, 16)}... differs from the certificate FWID ${hex(certFwid).slice(0, 16)}...`);
    let ok = false;
    try {
      ok = verify('sha384', e.signed, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, e.signature);
    } catch {
      ok = false;
    }
    checks.expect('gpu.signature', ok, 'E_ATTEST_SIGNATURE', 'ECDSA P-384 signature over request || response verifies with the leaf key', 'the SPDM response signature does not verify with the leaf key');
  } else {
    checks.fail('gpu.signature', 'E_ATTEST_CHAIN', 'no device certificate supplied');
  }

  if (options.nonce !== undefined) {
    if (options.nonce.length !== 32) throw new RangeError(`"nonce" expected 32 bytes for SPDM, got ${options.nonce.length}`);
    checks.expect('gpu.nonce', bytesEqual(e.nonce, options.nonce), 'E_ATTEST_NONCE', 'SPDM request nonce is the expected nonce', 'SPDM request nonce is not the expected nonce');
  } else checks.skip('gpu.nonce', 'no expected nonce given');

  if (options.reported !== undefined) {
    const { driverVersion, vbiosVersion } = options.reported;
    const bad = [
      driverVersion !== undefined && driverVersion !== e.driverVersion ? `driver ${driverVersion} vs ${e.driverVersion}` : undefined,
      vbiosVersion !== undefined && vbiosVersion.toLowerCase() !== e.vbiosVersion?.toLowerCase() ? `VBIOS ${vbiosVersion} vs ${e.vbiosVersion}` : undefined,
    ].filter((x) => x !== undefined);
    checks.expect('gpu.versions', bad.length === 0, 'E_ATTEST_MEASUREMENT', 'reported driver and VBIOS versions match the evidence', `reported versions differ from the evidence: ${bad.join(', ')}`);
  }

  // RIMs: supplied, else fetched when allowed. Each must verify; then golden vs runtime measurements.
  const ids = rimIds(e, arch);
  let rimTexts = options.rims ?? [];
  if (rimTexts.length === 0 && options.fetcher !== undefined) {
    try {
      rimTexts = await Promise.all([ids.driver, ids.vbios].filter((x): x is string => x !== undefined).map((id) => fetchRim(options.fetcher!, id)));
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      checks.fail('gpu.rim-fetch', e.code, e.message);
    }
  }
  const rims: Rim[] = [];
  const rimChains: Array<readonly ParsedCertificate[]> = [];
  const rimRoot = parseCertificates(trust.nvidiaRimRoot)[0]!;
  rimTexts.forEach((xml, i) => {
    const { outcome: r, chain: rimChain } = checkRim(xml, rimRoot, options.at);
    if (!r.ok) {
      checks.fail(`gpu.rim[${i}]`, r.code, r.detail);
      return;
    }
    const v = r.rim.version.toLowerCase();
    if (v !== e.driverVersion?.toLowerCase() && v !== e.vbiosVersion?.toLowerCase()) {
      checks.fail(`gpu.rim[${i}]`, 'E_ATTEST_RIM', `RIM is for version ${r.rim.version}; the evidence has driver ${e.driverVersion}, VBIOS ${e.vbiosVersion}`);
      return;
    }
    checks.pass(`gpu.rim[${i}]`, r.detail);
    rims.push(r.rim);
    rimChains.push(rimChain);
  });
  // OCSP (nvtrust: every non-root certificate of the device chain and of each RIM signer chain).
  if (options.fetcher !== undefined && (options.ocsp ?? true)) {
    let problem: { code: Parameters<Checks['fail']>[1]; detail: string } | undefined;
    try {
      for (const c of [deviceChain, ...rimChains]) problem ??= await ocspCheckChain(options.fetcher, c, options.at);
    } catch (e) {
      if (!(e instanceof AttestError)) throw e;
      problem = { code: e.code, detail: e.message };
    }
    if (problem) checks.fail('gpu.ocsp', problem.code, problem.detail);
    else checks.pass('gpu.ocsp', `OCSP: device${rims.length > 0 ? ' and RIM signer' : ''} certificates are good`);
  } else checks.skip('gpu.ocsp', 'OCSP not checked (offline)');

  const mismatched: number[] = [];
  let compared = false;
  if (rims.length > 0) {
    const golden = new Map<number, readonly string[]>();
    let conflict: number | undefined;
    for (const rim of rims) {
      for (const m of rim.measurements) {
        if (!m.active) continue;
        if (golden.has(m.index)) conflict = m.index;
        golden.set(m.index, m.alternatives);
      }
    }
    if (conflict !== undefined) checks.fail('gpu.measurements', 'E_ATTEST_RIM', `two RIMs define active index ${conflict}`);
    else {
      const runtime = new Map(e.blocks.map((b) => [b.index, hex(b.value)]));
      for (const [index, alternatives] of [...golden].sort((a, b) => a[0] - b[0])) {
        const value = runtime.get(index + 1);
        if (value === undefined || !alternatives.includes(value)) mismatched.push(index);
      }
      compared = true;
      const allowed = new Set(options.allowedMismatchIndices ?? []);
      const refused = mismatched.filter((i) => !allowed.has(i));
      checks.expect(
        'gpu.measurements',
        refused.length === 0,
        'E_ATTEST_MEASUREMENT',
        `${golden.size} active golden measurements match${mismatched.length > 0 ? ` (mismatch tolerated by policy at ${mismatched.join(', ')})` : ''}`,
        `${refused.length} of ${golden.size} active measurements do not match the RIMs (indices ${refused.slice(0, 12).join(', ')}${refused.length > 12 ? ', ...' : ''})`,
      );
    }
  } else checks.skip('gpu.measurements', rimTexts.length === 0 ? 'no RIM supplied: measurements not compared' : 'no RIM verified: measurements not compared');

  return {
    type: 'gpu',
    ok: checks.ok,
    checks: checks.list,
    failure: checks.failure,
    claims: {
      arch,
      nonce: hex(e.nonce),
      responderNonce: hex(e.responderNonce),
      driverVersion: e.driverVersion,
      vbiosVersion: e.vbiosVersion,
      fwid: e.fwid === undefined ? undefined : hex(e.fwid),
      opaque: describeOpaque(e),
      measurements: Object.fromEntries(e.blocks.map((b) => [String(b.index), hex(b.value)])),
      rims: rims.map((r) => ({ tagId: r.tagId, version: r.version, product: r.product })),
      rimIds: ids,
      mismatchedIndices: mismatched,
      measurementsCompared: compared,
    },
    chain,
    at: options.at.toISOString(),
    trust: trust.label,
  };
}

const BundleEntry = z.object({
  arch: z.string().max(32),
  nonce: z.string().regex(/^[0-9a-fA-F]{64}$/),
  evidence: z.string().max(1 << 20),
  certificate: z.string().max(1 << 20),
  driver_version: z.string().max(64).optional(),
  vbios_version: z.string().max(64).optional(),
  version: z.string().max(16).optional(),
}).loose();

/** One GPU's evidence from an SDK/NRAS JSON bundle. */
export interface GpuEvidenceEntry {
  readonly arch: string;
  readonly nonce: Uint8Array;
  readonly evidence: Uint8Array;
  /** PEM chain, leaf first. */
  readonly certificates: string;
  readonly driverVersion: string | undefined;
  readonly vbiosVersion: string | undefined;
}

/**
 * Parses the NVIDIA attestation SDK / NRAS evidence JSON: `[{arch, nonce, evidence: base64, certificate:
 * base64(PEM)}]` (a single object is accepted too). @throws AttestError E_ATTEST_MALFORMED
 */
export function parseGpuEvidenceBundle(text: string): GpuEvidenceEntry[] {
  let doc: unknown;
  try {
    doc = parseStrictJson(text);
  } catch (cause) {
    throw new AttestError('E_ATTEST_MALFORMED', 'GPU evidence JSON is not valid JSON', { cause });
  }
  const parsed = z.union([z.array(BundleEntry).min(1).max(64), BundleEntry]).safeParse(doc);
  if (!parsed.success) throw new AttestError('E_ATTEST_MALFORMED', 'GPU evidence JSON is not an array of {arch, nonce, evidence, certificate}');
  const list = Array.isArray(parsed.data) ? parsed.data : [parsed.data];
  return list.map((x) => ({
    arch: x.arch.toUpperCase(),
    nonce: new Uint8Array(Buffer.from(x.nonce, 'hex')),
    evidence: new Uint8Array(Buffer.from(x.evidence, 'base64')),
    certificates: Buffer.from(x.certificate, 'base64').toString('latin1'),
    driverVersion: x.driver_version,
    vbiosVersion: x.vbios_version,
  }));
}
