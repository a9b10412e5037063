// "At least as strict": a site may replace its signed attestation policy (local/attestation_policy.json.default,
// written by the project) with its own local/attestation_policy.json only when every piece of evidence the
// site's policy accepts, the signed policy accepts too (issue #14.17). The rule for each field is stated once
// in RULES below; a test checks that every field of the schema has one, so a new field cannot slip through.
import { AttestError } from '@flare/core';
import type { AttestationPolicy } from './policy.js';

/** How a field of a policy section compares: the local value may only narrow what the signed one allows. */
type Rule =
  /** An allow-list: absent means "any". Local must be a subset (absent only when signed is absent). */
  | 'subset'
  /** A boolean that widens what is accepted when true (allowDebug). Signed false: local must be false. */
  | 'allow'
  /** A boolean that narrows what is accepted when true (requireNonce). Signed true: local must be true. */
  | 'require'
  /** A lower bound (number, dotted version, per-component record, per-byte array). Local must be >= signed. */
  | 'min'
  /** An upper bound (maxAgeSeconds). Local must be <= signed. */
  | 'max';

/** Every field of every section of the policy, with its rule. Sections absent from a policy apply no rules. */
export const STRICTNESS_RULES = {
  freshness: { maxAgeSeconds: 'max', requireNonce: 'require' },
  snp: {
    measurements: 'subset',
    hostData: 'subset',
    idKeyDigests: 'subset',
    minTcb: 'min',
    minGuestSvn: 'min',
    minFirmware: 'min',
    allowDebug: 'allow',
    allowMigrationAgent: 'allow',
    allowSmt: 'allow',
    vmpls: 'subset',
    signingKeys: 'subset',
    products: 'subset',
    allowProvisionalFirmware: 'allow',
  },
  tdx: {
    mrTd: 'subset',
    rtmr0: 'subset',
    rtmr1: 'subset',
    rtmr2: 'subset',
    rtmr3: 'subset',
    mrSeam: 'subset',
    mrConfigId: 'subset',
    allowDebug: 'allow',
    acceptedTcbStatuses: 'subset',
    requireCollateral: 'require',
    minTeeTcbSvn: 'min',
  },
  gpu: { architectures: 'subset', requireRims: 'require', rimIds: 'subset', allowedMismatchIndices: 'subset', minDriverVersion: 'min' },
} as const satisfies Record<'freshness' | 'snp' | 'tdx' | 'gpu', Record<string, Rule>>;

const dotted = (a: string, b: string): number => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};

/** Why `local` is weaker than `signed` at `field`, or undefined when it is not. */
function weaker(rule: Rule, signed: unknown, local: unknown): string | undefined {
  if (signed === undefined) return undefined; // the signed policy sets no bound here: any local value is as strict
  switch (rule) {
    case 'subset': {
      if (local === undefined) return 'allows any value; the signed policy lists some';
      const allowed = new Set(signed as readonly unknown[]);
      const extra = (local as readonly unknown[]).filter((v) => !allowed.has(v));
      return extra.length === 0 ? undefined : `allows ${extra.map((v) => JSON.stringify(v)).join(', ')}, which the signed policy does not`;
    }
    case 'allow':
      return signed === false && local !== false ? 'is true; the signed policy has false' : undefined;
    case 'require':
      return signed === true && local !== true ? 'is false; the signed policy has true' : undefined;
    case 'max':
      return local === undefined || (local as number) > (signed as number) ? `is ${String(local)}; the signed policy allows at most ${String(signed)}` : undefined;
    case 'min': {
      if (local === undefined) return `has no minimum; the signed policy requires ${JSON.stringify(signed)}`;
      if (typeof signed === 'number') return (local as number) < signed ? `is ${String(local)}, below the signed minimum ${signed}` : undefined;
      if (typeof signed === 'string') return dotted(local as string, signed) < 0 ? `is ${String(local)}, below the signed minimum ${signed}` : undefined;
      if (Array.isArray(signed)) {
        const low = signed.map((m: number, i) => [i, m, (local as readonly number[])[i]] as const).filter(([, m, l]) => l === undefined || l < m);
        return low.length === 0 ? undefined : `is below the signed minimum at index ${low.map(([i]) => i).join(', ')}`;
      }
      const low = Object.entries(signed as Record<string, number>).filter(([k, m]) => {
        const l = (local as Record<string, number | undefined>)[k];
        return l === undefined || l < m;
      });
      return low.length === 0 ? undefined : `is below the signed minimum for ${low.map(([k]) => k).join(', ')}`;
    }
  }
}

/**
 * Checks that a site's own attestation policy is at least as strict as the signed one: it requires every
 * evidence type the signed one requires, and for each section the signed policy has, it has the section and
 * accepts nothing the signed one refuses (narrower allow-lists, higher minimums, no allow-flag the signed one
 * turns off). A policy is as strict as itself.
 *
 * @throws AttestError E_ATTEST_POLICY_WEAKER naming the first field that accepts more than the signed policy.
 * @example
 * ```ts
 * assertAtLeastAsStrict(parseAttestationPolicy(signedText), parseAttestationPolicy(localText));
 * ```
 */
export function assertAtLeastAsStrict(signed: AttestationPolicy, local: AttestationPolicy): void {
  const refuse = (field: string, why: string): never => {
    throw new AttestError('E_ATTEST_POLICY_WEAKER', `the site's attestation policy is weaker than the signed one: "${field}" ${why}`);
  };
  const missing = signed.require.filter((t) => !local.require.includes(t));
  if (missing.length > 0) refuse('require', `lacks ${missing.join(', ')}`);
  for (const [section, rules] of Object.entries(STRICTNESS_RULES) as Array<[keyof typeof STRICTNESS_RULES, Record<string, Rule>]>) {
    const s = signed[section] as Record<string, unknown> | undefined;
    if (s === undefined) continue;
    const l = local[section] as Record<string, unknown> | undefined;
    if (l === undefined) refuse(section, 'is missing; the signed policy has this section');
    for (const [field, rule] of Object.entries(rules)) {
      const why = weaker(rule, s[field], l![field]);
      if (why !== undefined) refuse(`${section}.${field}`, why);
    }
  }
}
