import { AttestError, parseStrictJson } from '@flare/core';
import { z } from 'zod';
import { Checks, type Check } from './check.js';
import type { GpuClaims } from './gpu/verify.js';
import type { EvidenceType, VerificationResult } from './result.js';
import type { SnpClaims } from './snp/verify.js';
import type { SnpTcb } from './snp/tcb.js';
import { TDX_TCB_STATUSES } from './tdx/collateral.js';
import type { TdxClaims } from './tdx/verify.js';

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`), `expected ${bytes} bytes as hex`).transform((s) => s.toLowerCase());
const list = <T extends z.ZodType>(item: T) => z.array(item).min(1).max(1024);
const svn = z.number().int().min(0).max(255);

const SnpPolicy = z.strictObject({
  /** Allowed launch MEASUREMENT values (SHA-384, hex). Absent: any. */
  measurements: list(hex(48)).optional(),
  /** Allowed HOST_DATA values. */
  hostData: list(hex(32)).optional(),
  /** Allowed ID_KEY_DIGEST values (ID-block signers). */
  idKeyDigests: list(hex(48)).optional(),
  /** Minimum REPORTED_TCB per component. */
  minTcb: z.strictObject({ bootloader: svn, tee: svn, snp: svn, microcode: svn, fmc: svn }).partial().optional(),
  minGuestSvn: z.number().int().min(0).optional(),
  /** Minimum firmware version "major.minor" (CURRENT_MAJOR.CURRENT_MINOR). */
  minFirmware: z.string().regex(/^\d{1,3}\.\d{1,3}$/).optional(),
  allowDebug: z.boolean().default(false),
  allowMigrationAgent: z.boolean().default(false),
  allowSmt: z.boolean().default(true),
  /** VM privilege levels the report may come from. */
  vmpls: z.array(z.number().int().min(0).max(3)).min(1).max(4).default([0]),
  signingKeys: z.array(z.enum(['vcek', 'vlek'])).min(1).max(2).default(['vcek', 'vlek']),
  products: z.array(z.enum(['Milan', 'Genoa', 'Turin'])).min(1).max(3).optional(),
  /** Accept COMMITTED_TCB != CURRENT_TCB (firmware installed but not committed). */
  allowProvisionalFirmware: z.boolean().default(false),
});

const TdxPolicy = z.strictObject({
  mrTd: list(hex(48)).optional(),
  rtmr0: list(hex(48)).optional(),
  rtmr1: list(hex(48)).optional(),
  rtmr2: list(hex(48)).optional(),
  rtmr3: list(hex(48)).optional(),
  mrSeam: list(hex(48)).optional(),
  mrConfigId: list(hex(48)).optional(),
  allowDebug: z.boolean().default(false),
  /** TCB statuses accepted from collateral evaluation. */
  acceptedTcbStatuses: z.array(z.enum(TDX_TCB_STATUSES)).min(1).max(7).default(['UpToDate']),
  /** Refuse a quote verified without TCB info and QE identity. */
  requireCollateral: z.boolean().default(true),
  /** Minimum TEE_TCB_SVN per byte (up to 16 values). */
  minTeeTcbSvn: z.array(svn).min(1).max(16).optional(),
});

const GpuPolicy = z.strictObject({
  architectures: z.array(z.enum(['HOPPER', 'BLACKWELL', 'LS10'])).min(1).max(3).default(['HOPPER', 'BLACKWELL', 'LS10']),
  /** Refuse evidence whose measurements were not compared with verified RIMs. */
  requireRims: z.boolean().default(true),
  /** Allowed driver and VBIOS RIM ids (e.g. NV_GPU_DRIVER_GH100_550.144.03). Absent: any that verifies. */
  rimIds: list(z.string().max(128)).optional(),
  /** RIM indices whose mismatch is tolerated (NVIDIA's relying-party policy examples allow e.g. 7). */
  allowedMismatchIndices: z.array(z.number().int().min(0).max(255)).max(256).default([]),
  /** Minimum driver version, dotted ("550.90.07"). */
  minDriverVersion: z.string().regex(/^\d+(\.\d+)*$/).optional(),
});

/**
 * A site's attestation policy (JSON, `version: 1`). Unknown fields are refused. See docs/attestation.md.
 *
 * @example
 * ```json
 * { "version": 1, "require": ["snp", "gpu"],
 *   "freshness": { "maxAgeSeconds": 600, "requireNonce": true },
 *   "snp": { "measurements": ["c577...dc"], "minTcb": { "snp": 23, "microcode": 84 }, "vmpls": [0] },
 *   "gpu": { "allowedMismatchIndices": [] } }
 * ```
 */
export const AttestationPolicySchema = z.strictObject({
  version: z.literal(1),
  /** Evidence types a participant must present (each verified and meeting its section). */
  require: z.array(z.enum(['snp', 'tdx', 'gpu'])).max(3).default([]),
  freshness: z
    .strictObject({
      /** Largest age of evidence, from the moment its nonce was issued. */
      maxAgeSeconds: z.number().int().min(1).max(7 * 24 * 3600).default(600),
      /** Refuse evidence whose session nonce was not checked. */
      requireNonce: z.boolean().default(true),
    })
    .default({ maxAgeSeconds: 600, requireNonce: true }),
  snp: SnpPolicy.optional(),
  tdx: TdxPolicy.optional(),
  gpu: GpuPolicy.optional(),
});

/** A parsed attestation policy (defaults filled in). */
export type AttestationPolicy = z.output<typeof AttestationPolicySchema>;
/** An attestation policy as written in a file (defaults optional). */
export type AttestationPolicyInput = z.input<typeof AttestationPolicySchema>;

/**
 * Parses and validates a policy from JSON text (duplicate keys refused) or an already parsed value.
 * @throws AttestError E_ATTEST_POLICY naming the first invalid field
 */
export function parseAttestationPolicy(input: string | unknown): AttestationPolicy {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = parseStrictJson(input, { maxDepth: 8 });
    } catch (cause) {
      throw new AttestError('E_ATTEST_POLICY', 'the attestation policy is not valid JSON', { cause });
    }
  }
  const parsed = AttestationPolicySchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AttestError('E_ATTEST_POLICY', `attestation policy field "${issue.path.join('.') || '(root)'}": ${issue.message}`);
  }
  return parsed.data;
}

/** The outcome of {@link evaluatePolicy}. */
export interface PolicyDecision {
  readonly ok: boolean;
  readonly checks: readonly Check[];
  readonly failure: Check | undefined;
}

/** Context of a policy evaluation. */
export interface PolicyContext {
  /** The evaluation time. */
  readonly at: Date;
  /** When the nonce for this evidence was issued (freshness is measured from it). */
  readonly issuedAt?: Date;
  /** Check `require` (default true). The CLI, verifying one piece of evidence, turns it off. */
  readonly checkRequired?: boolean;
}

const dotted = (a: string, b: string) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};

function snpRules(p: NonNullable<AttestationPolicy['snp']>, c: SnpClaims, checks: Checks): void {
  const id = (s: string) => `policy.snp.${s}`;
  checks.expect(id('debug'), p.allowDebug || !c.debug, 'E_ATTEST_POLICY_DEBUG', c.debug ? 'DEBUG allowed by policy' : 'DEBUG is off', 'the guest policy allows DEBUG');
  checks.expect(id('vmpl'), p.vmpls.includes(c.vmpl), 'E_ATTEST_POLICY_VMPL', `VMPL ${c.vmpl} allowed`, `VMPL ${c.vmpl} is not in ${JSON.stringify(p.vmpls)}`);
  checks.expect(id('signing-key'), c.signingKey !== 'none' && p.signingKeys.includes(c.signingKey), 'E_ATTEST_SIGNING_KEY', `${c.signingKey.toUpperCase()} allowed`, `signing key ${c.signingKey.toUpperCase()} is not allowed`);
  checks.expect(id('migration-agent'), p.allowMigrationAgent || !c.migrateMa, 'E_ATTEST_POLICY_VIOLATION', 'no migration agent', 'the guest policy allows a migration agent');
  checks.expect(id('smt'), p.allowSmt || !c.smt, 'E_ATTEST_POLICY_VIOLATION', 'SMT setting allowed', 'the guest policy allows SMT, which the policy forbids');
  if (p.products) checks.expect(id('product'), c.product !== undefined && p.products.includes(c.product), 'E_ATTEST_PRODUCT', `${c.product} allowed`, `product ${c.product ?? 'unknown'} is not allowed`);
  if (p.measurements) checks.expect(id('measurement'), p.measurements.includes(c.measurement), 'E_ATTEST_MEASUREMENT', 'MEASUREMENT is allowed', `MEASUREMENT ${c.measurement.slice(0, 16)}... is not in the policy`);
  if (p.hostData) checks.expect(id('host-data'), p.hostData.includes(c.hostData), 'E_ATTEST_POLICY_VIOLATION', 'HOST_DATA is allowed', 'HOST_DATA is not in the policy');
  if (p.idKeyDigests) checks.expect(id('id-key'), p.idKeyDigests.includes(c.idKeyDigest), 'E_ATTEST_POLICY_VIOLATION', 'ID key digest is allowed', 'ID_KEY_DIGEST is not in the policy');
  if (p.minGuestSvn !== undefined) checks.expect(id('guest-svn'), c.guestSvn >= p.minGuestSvn, 'E_ATTEST_POLICY_TCB', `GUEST_SVN ${c.guestSvn}`, `GUEST_SVN ${c.guestSvn} is below ${p.minGuestSvn}`);
  if (p.minFirmware !== undefined) checks.expect(id('firmware'), dotted(c.currentVersion, `${p.minFirmware}.0`) >= 0, 'E_ATTEST_POLICY_TCB', `firmware ${c.currentVersion}`, `firmware ${c.currentVersion} is below ${p.minFirmware}`);
  if (p.minTcb !== undefined) {
    const reported = c.reportedTcb;
    if (typeof reported === 'string') checks.fail(id('min-tcb'), 'E_ATTEST_POLICY_TCB', 'the TCB could not be decoded (unknown product)');
    else {
      const low = (Object.entries(p.minTcb) as Array<[keyof SnpTcb, number]>).filter(([k, min]) => k !== 'raw' && typeof reported[k] === 'number' && (reported[k] as number) < min);
      checks.expect(id('min-tcb'), low.length === 0, 'E_ATTEST_POLICY_TCB', 'REPORTED_TCB meets the minimum', `REPORTED_TCB below the minimum: ${low.map(([k, m]) => `${k} ${reported[k]} < ${m}`).join(', ')}`);
    }
  }
  if (!p.allowProvisionalFirmware) {
    const same = JSON.stringify(c.committedTcb) === JSON.stringify(c.currentTcb) && c.committedVersion === c.currentVersion;
    checks.expect(id('committed'), same, 'E_ATTEST_POLICY_TCB', 'COMMITTED equals CURRENT', 'firmware is provisional: COMMITTED_TCB or version differs from CURRENT');
  }
}

function tdxRules(p: NonNullable<AttestationPolicy['tdx']>, c: TdxClaims, checks: Checks): void {
  const id = (s: string) => `policy.tdx.${s}`;
  checks.expect(id('debug'), p.allowDebug || !c.debug, 'E_ATTEST_POLICY_DEBUG', 'TD DEBUG is off', 'TD_ATTRIBUTES.DEBUG is set');
  if (p.requireCollateral) checks.expect(id('collateral'), c.tcbStatus !== undefined && c.qeTcbStatus !== undefined, 'E_ATTEST_COLLATERAL', 'TCB info and QE identity were evaluated', 'the quote was verified without TCB info and QE identity');
  if (c.tcbStatus !== undefined) checks.expect(id('tcb-status'), p.acceptedTcbStatuses.includes(c.tcbStatus), 'E_ATTEST_TCB_STATUS', `TCB status ${c.tcbStatus} accepted`, `TCB status ${c.tcbStatus} is not accepted`);
  const member = (name: string, allowed: readonly string[] | undefined, value: string) => {
    if (allowed) checks.expect(id(name), allowed.includes(value), 'E_ATTEST_MEASUREMENT', `${name.toUpperCase()} is allowed`, `${name.toUpperCase()} ${value.slice(0, 16)}... is not in the policy`);
  };
  member('mrtd', p.mrTd, c.mrTd);
  member('rtmr0', p.rtmr0, c.rtmrs[0]!);
  member('rtmr1', p.rtmr1, c.rtmrs[1]!);
  member('rtmr2', p.rtmr2, c.rtmrs[2]!);
  member('rtmr3', p.rtmr3, c.rtmrs[3]!);
  member('mrseam', p.mrSeam, c.mrSeam);
  member('mrconfigid', p.mrConfigId, c.mrConfigId);
  if (p.minTeeTcbSvn) {
    const svn = Buffer.from(c.teeTcbSvn, 'hex');
    const low = p.minTeeTcbSvn.map((m, i) => [i, m] as const).filter(([i, m]) => svn[i]! < m);
    checks.expect(id('tee-tcb-svn'), low.length === 0, 'E_ATTEST_POLICY_TCB', 'TEE_TCB_SVN meets the minimum', `TEE_TCB_SVN below the minimum at byte ${low.map(([i]) => i).join(', ')}`);
  }
}

function gpuRules(p: NonNullable<AttestationPolicy['gpu']>, c: GpuClaims, checks: Checks): void {
  const id = (s: string) => `policy.gpu.${s}`;
  checks.expect(id('arch'), c.arch !== undefined && p.architectures.includes(c.arch), 'E_ATTEST_POLICY_VIOLATION', `${c.arch} allowed`, `architecture ${c.arch ?? 'unknown'} is not allowed`);
  if (p.requireRims) checks.expect(id('rims'), c.measurementsCompared, 'E_ATTEST_MEASUREMENT', 'measurements were compared with verified RIMs', 'measurements were not compared with verified RIMs');
  const refused = c.mismatchedIndices.filter((i) => !p.allowedMismatchIndices.includes(i));
  checks.expect(id('measurements'), refused.length === 0, 'E_ATTEST_MEASUREMENT', 'no disallowed measurement mismatch', `measurement mismatch at RIM indices ${refused.join(', ')}`);
  if (p.rimIds) {
    const ids = [c.rimIds.driver, c.rimIds.vbios].filter((x): x is string => x !== undefined);
    const unknown = ids.filter((x) => !p.rimIds!.includes(x));
    checks.expect(id('rim-ids'), ids.length > 0 && unknown.length === 0, 'E_ATTEST_MEASUREMENT', `RIM ids ${ids.join(', ')} allowed`, `RIM ids not allowed: ${unknown.join(', ') || '(none derived)'}`);
  }
  if (p.minDriverVersion !== undefined) {
    checks.expect(id('driver'), c.driverVersion !== undefined && dotted(c.driverVersion, p.minDriverVersion) >= 0, 'E_ATTEST_POLICY_TCB', `driver ${c.driverVersion}`, `driver ${c.driverVersion ?? 'unknown'} is below ${p.minDriverVersion}`);
  }
}

/**
 * Applies a site's policy to verified evidence: every result must have verified; each type's section is
 * applied to its claims; `require` lists the types that must be present; freshness needs the nonce check to
 * have passed and the evidence to be younger than `maxAgeSeconds` (from `issuedAt`).
 *
 * @example
 * ```ts
 * const decision = evaluatePolicy(policy, [snpResult, gpuResult], { at: new Date(), issuedAt });
 * if (!decision.ok) refuse(decision.failure!.code!, decision.failure!.detail);
 * ```
 */
export function evaluatePolicy(policy: AttestationPolicy, results: ReadonlyArray<VerificationResult<unknown>>, context: PolicyContext): PolicyDecision {
  const checks = new Checks();
  if (context.checkRequired ?? true) {
    for (const type of policy.require) {
      checks.expect(`policy.require.${type}`, results.some((r) => r.type === type), 'E_ATTEST_MISSING_EVIDENCE', `${type} evidence presented`, `the policy requires ${type} evidence and none was presented`);
    }
  }
  if (context.issuedAt !== undefined) {
    const age = (context.at.getTime() - context.issuedAt.getTime()) / 1000;
    checks.expect('policy.freshness', age >= -5 && age <= policy.freshness.maxAgeSeconds, 'E_ATTEST_STALE', `evidence is ${Math.round(age)} s old`, `evidence is ${Math.round(age)} s old; the policy allows ${policy.freshness.maxAgeSeconds} s`);
  }
  for (const r of results) {
    const t: EvidenceType = r.type;
    if (!r.ok) checks.fail(`policy.${t}.verified`, r.failure?.code ?? 'E_ATTEST_MALFORMED', `${t} evidence did not verify: ${r.failure?.detail ?? 'unknown reason'}`);
    if (policy.freshness.requireNonce) {
      const nonce = r.checks.find((c) => c.id === `${t}.nonce`);
      checks.expect(`policy.${t}.nonce`, nonce?.status === 'pass', 'E_ATTEST_STALE', 'evidence is bound to the session nonce', 'the policy requires the session nonce and it was not checked');
    }
    // Claims exist only when the evidence parsed.
    if (r.checks.find((c) => c.id === `${t}.parse`)?.status !== 'pass') continue;
    if (t === 'snp' && policy.snp) snpRules(policy.snp, r.claims as SnpClaims, checks);
    if (t === 'tdx' && policy.tdx) tdxRules(policy.tdx, r.claims as TdxClaims, checks);
    if (t === 'gpu' && policy.gpu) gpuRules(policy.gpu, r.claims as GpuClaims, checks);
  }
  return { ok: checks.ok, checks: checks.list, failure: checks.failure };
}
