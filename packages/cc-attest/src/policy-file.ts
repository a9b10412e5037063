import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError, type KitLocalOverride } from '@flare/core';
import { ATTESTATION_POLICY_KIT_PATH } from './kit-builder.js';
import { parseAttestationPolicy, type AttestationPolicy } from './policy.js';
import { assertAtLeastAsStrict } from './strictness.js';

/** The site's own override of the signed policy (FLARE style: local/X overrides local/X.default). */
const LOCAL_PATH = ATTESTATION_POLICY_KIT_PATH.replace(/\.default$/, '');
const decoder = new TextDecoder('utf-8', { fatal: true });

function parseAt(rel: string, bytes: Uint8Array): AttestationPolicy {
  try {
    return parseAttestationPolicy(decoder.decode(bytes));
  } catch (e) {
    if (e instanceof AttestError) throw new AttestError('E_ATTEST_POLICY', `${rel}: ${e.message}`, { cause: e });
    throw new AttestError('E_ATTEST_POLICY', `${rel} is not UTF-8 text`, { cause: e });
  }
}

/**
 * Resolves a site's attestation policy from the bytes of its two files: `local/attestation_policy.json` (the
 * site's own) when present, which must be at least as strict as the signed
 * `local/attestation_policy.json.default` (written by the project's kit builder), else the default. Undefined
 * when neither exists (the site requires no attestation).
 *
 * @throws AttestError E_ATTEST_POLICY for an invalid file (never a fall-back to the other one),
 *   E_ATTEST_POLICY_WEAKER when the site's own policy accepts evidence the signed one refuses.
 */
export function resolveAttestationPolicy(local: Uint8Array | undefined, signedDefault: Uint8Array | undefined): AttestationPolicy | undefined {
  const signed = signedDefault === undefined ? undefined : parseAt(ATTESTATION_POLICY_KIT_PATH, signedDefault);
  if (local === undefined) return signed;
  const own = parseAt(LOCAL_PATH, local);
  if (signed !== undefined) {
    try {
      assertAtLeastAsStrict(signed, own);
    } catch (e) {
      if (e instanceof AttestError) throw new AttestError(e.code, `${LOCAL_PATH} is refused: ${e.message}`, { cause: e });
      throw e;
    }
  }
  return own;
}

/**
 * The rule @flare/pki's `loadKit` and `verifyKit` take in `strictOverrides`: a site may keep its own
 * `local/attestation_policy.json` beside the signed default only when it is at least as strict.
 *
 * @example
 * ```ts
 * const kit = await loadKit(dir, { strictOverrides: [attestationPolicyOverride] });
 * const policy = loadAttestationPolicy(kit.files);
 * ```
 */
export const attestationPolicyOverride: KitLocalOverride = {
  file: LOCAL_PATH.slice('local/'.length),
  check(local: Uint8Array, signedDefault: Uint8Array | undefined): void {
    resolveAttestationPolicy(local, signedDefault);
  },
};

/**
 * Loads a site's attestation policy from its kit, FLARE style: `local/attestation_policy.json` overrides
 * `local/attestation_policy.json.default` (written by the kit builder) when it is at least as strict. Pass
 * `kit.files` from @flare/pki's `loadKit` (the verified bytes; preferred), or a kit folder, which is read
 * here (check its signatures first). Returns undefined when neither file exists (no attestation required).
 *
 * @throws AttestError E_ATTEST_POLICY when a file exists but is invalid (never falls back to the default then),
 *   E_ATTEST_POLICY_WEAKER when the site's own policy is weaker than the signed default
 */
export async function loadAttestationPolicy(kit: string | ReadonlyMap<string, Uint8Array>): Promise<AttestationPolicy | undefined> {
  if (typeof kit !== 'string') return resolveAttestationPolicy(kit.get(LOCAL_PATH), kit.get(ATTESTATION_POLICY_KIT_PATH));
  const read = async (rel: string): Promise<Uint8Array | undefined> => {
    try {
      return new Uint8Array(await readFile(join(kit, rel)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AttestError('E_ATTEST_POLICY', `cannot read ${rel}`, { cause: e });
    }
  };
  return resolveAttestationPolicy(await read(LOCAL_PATH), await read(ATTESTATION_POLICY_KIT_PATH));
}
