import { AttestError, canonicalJson, type JsonValue, type KitBuildContext, type KitBuilder } from '@flare/core';
import { parseAttestationPolicy } from './policy.js';

/** Where the builder puts a site's policy in its kit (a site may override it with local/attestation_policy.json). */
export const ATTESTATION_POLICY_KIT_PATH = 'local/attestation_policy.json.default';

/** FLARE's confidential-computing builder paths whose project.yml entries this builder handles. */
export const CC_BUILDER_PATHS: readonly string[] = ['nvflare.lighter.cc_provision.impl.cc.CCBuilder', 'nvflare.lighter.impl.cc.CCBuilder', 'flare_ts.cc_attest.AttestationPolicyBuilder'];

/**
 * The kit builder for attestation policies, registered by the CLI with @flare/pki. In project.yml:
 *
 * ```yaml
 * builders:
 *   - path: nvflare.lighter.cc_provision.impl.cc.CCBuilder
 *     args: { policy: { version: 1, require: [snp], snp: { vmpls: [0] } } }
 * participants:
 *   - name: site-1
 *     type: client
 *     org: org_a
 *     attestation_policy: { version: 1, require: [snp, gpu] }   # overrides the project default
 * ```
 *
 * Every server and client kit gets `local/attestation_policy.json.default` (validated when provisioning, so a
 * typo fails then and not at the first login); participants get none when neither a project default nor
 * their own policy is given. The kit is signed after builders run, so the policy is tamper-evident.
 */
export function attestationPolicyKitBuilder(): KitBuilder {
  return {
    name: 'cc-attest-policy',
    matches: CC_BUILDER_PATHS,
    participantKeys: ['attestation_policy'],
    build(ctx: KitBuildContext): void {
      const projectDefault = ctx.args?.['policy'];
      for (const p of ctx.project.participants) {
        if (p.type !== 'server' && p.type !== 'client') continue;
        const own: JsonValue | undefined = p.props['attestation_policy'];
        const source = own ?? projectDefault;
        if (source === undefined || source === null) continue;
        let policy;
        try {
          policy = parseAttestationPolicy(source);
        } catch (e) {
          if (e instanceof AttestError) throw new AttestError('E_ATTEST_POLICY', `participant ${p.name}: ${e.message}`, { cause: e });
          throw e;
        }
        ctx.addFile(p.name, ATTESTATION_POLICY_KIT_PATH, new TextEncoder().encode(`${canonicalJson(policy as unknown as JsonValue)}\n`));
      }
    },
  };
}
