import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError } from '@flare/core';
import { ATTESTATION_POLICY_KIT_PATH } from './kit-builder.js';
import { parseAttestationPolicy, type AttestationPolicy } from './policy.js';

/**
 * Loads a site's attestation policy from its kit, FLARE style: `local/attestation_policy.json` overrides
 * `local/attestation_policy.json.default` (written by the kit builder). Returns undefined when neither exists
 * (the site requires no attestation).
 *
 * @param kitDir the participant's kit folder (the one holding `startup/` and `local/`)
 * @throws AttestError E_ATTEST_POLICY when a file exists but is invalid (never falls back to the default then)
 */
export async function loadAttestationPolicy(kitDir: string): Promise<AttestationPolicy | undefined> {
  for (const rel of [ATTESTATION_POLICY_KIT_PATH.replace(/\.default$/, ''), ATTESTATION_POLICY_KIT_PATH]) {
    let text: string;
    try {
      text = await readFile(join(kitDir, rel), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new AttestError('E_ATTEST_POLICY', `cannot read ${rel}`, { cause: e });
    }
    try {
      return parseAttestationPolicy(text);
    } catch (e) {
      if (e instanceof AttestError) throw new AttestError('E_ATTEST_POLICY', `${rel}: ${e.message}`, { cause: e });
      throw e;
    }
  }
  return undefined;
}
