import { HeError, type KitBuildContext, type KitBuilder } from '@flare/core';
import { generateHeKeys, loadHeContext, type HeContext } from './context.js';
import { HE_CLIENT_CONTEXT_FILE, HE_SERVER_CONTEXT_FILE } from './kit.js';
import { heParamsFromBuilderArgs, resolveHeParams, sameParams, type HeParams } from './params.js';

/** The project.yml builder path whose args {@link heKitBuilder} reads (FLARE's HE provisioning step). */
export const HE_BUILDER_PATH = 'nvflare.lighter.impl.he.HEBuilder';
/** The file in the CA state folder that keeps the project's HE key set across re-provisioning. */
export const HE_STATE_FILE = 'client_context.seal';

/**
 * The HE step of provisioning (FLARE's `nvflare.lighter.impl.he.HEBuilder`): makes one CKKS key set per
 * project, puts the client context (secret key, file mode 0600) into every client kit as
 * `startup/client_context.seal` and the server context (no secret key) into the server kit as
 * `startup/server_context.seal`; admin and relay kits get nothing. @flare/pki signs the files with the rest of
 * the kit.
 *
 * The key set is kept in the CA state folder (`client_context.seal`, mode 0600), so re-provisioning, e.g.
 * adding a site, hands out the same keys. Parameters come from the project's HEBuilder args
 * (poly_modulus_degree, coeff_mod_bit_sizes, scale_bits, scheme), then `params`, then the defaults.
 *
 * @throws HeError E_HE_INVALID_PARAMS / E_HE_INSECURE_PARAMS for bad args; E_HE_STATE_MISMATCH when the
 *   stored keys were made with other parameters than the project now asks for.
 * @example
 * ```ts
 * await provision(projectYml, { workspace: 'workspace', builders: [heKitBuilder()] });
 * ```
 */
export function heKitBuilder(params?: Partial<HeParams>): KitBuilder {
  const defaults = resolveHeParams(params);
  return {
    name: 'he',
    matches: [HE_BUILDER_PATH],
    async build(ctx: KitBuildContext): Promise<void> {
      const wanted = ctx.args === undefined ? defaults : heParamsFromBuilderArgs(ctx.args, defaults);
      const stored = await ctx.state.read(HE_STATE_FILE);
      let client: HeContext;
      if (stored === undefined) {
        const keys = await generateHeKeys(wanted);
        keys.server.dispose();
        client = keys.client;
        try {
          await ctx.state.write(HE_STATE_FILE, client.serialize(), { mode: 0o600 });
        } catch (e) {
          client.dispose();
          throw e;
        }
      } else {
        client = await loadHeContext(stored);
        if (!client.hasSecretKey || !sameParams(client.params, wanted)) {
          const have = client.params;
          client.dispose();
          throw new HeError(
            'E_HE_STATE_MISMATCH',
            `the project's HE keys use N = ${have.polyModulusDegree}, primes [${have.coeffModBits.join(', ')}], scale 2^${have.scaleBits}; project.yml asks for N = ${wanted.polyModulusDegree}, primes [${wanted.coeffModBits.join(', ')}], scale 2^${wanted.scaleBits}`,
          );
        }
      }
      const server = client.toServerContext();
      try {
        const clientBytes = client.serialize();
        const serverBytes = server.serialize();
        for (const p of ctx.project.participants) {
          if (p.type === 'server') ctx.addFile(p.name, HE_SERVER_CONTEXT_FILE, serverBytes, { mode: 0o644 });
          else if (p.type === 'client') ctx.addFile(p.name, HE_CLIENT_CONTEXT_FILE, clientBytes, { mode: 0o600 });
        }
      } finally {
        server.dispose();
        client.dispose();
      }
    },
  };
}
