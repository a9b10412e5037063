import { expectFlareCodeAsync } from '@flare/core/testing';
import type { JsonValue, KitBuildContext, KitParticipant } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, HE_BUILDER_PATH, HE_CLIENT_CONTEXT_FILE, HE_SERVER_CONTEXT_FILE, HE_STATE_FILE, heKitBuilder, loadHeContext, type HeContext } from '../src/index.js';


// A KitBuildContext as @flare/pki hands it to builders: an in-memory CA state folder and kit files.
const participants: KitParticipant[] = [
  { name: 'localhost0', type: 'server', org: 'org_a', props: {} },
  { name: 'site-1', type: 'client', org: 'org_a', props: {} },
  { name: 'site-2', type: 'client', org: 'org_a', props: {} },
  { name: 'super@test.org', type: 'admin', org: 'org_a', props: { role: 'project_admin' } },
];

function buildContext(state: Map<string, { bytes: Uint8Array; mode?: number }>, args: Record<string, JsonValue> | undefined, people = participants) {
  const files = new Map<string, { bytes: Uint8Array; mode?: number }>();
  const ctx: KitBuildContext = {
    project: { name: 'he_test', participants: people },
    args,
    state: {
      read: async (file) => state.get(file)?.bytes,
      write: async (file, bytes, options) => void state.set(file, { bytes: bytes.slice(), ...(options?.mode === undefined ? {} : { mode: options.mode }) }),
    },
    addFile: (participant, relPath, bytes, options) => void files.set(`${participant}/${relPath}`, { bytes: bytes.slice(), ...(options?.mode === undefined ? {} : { mode: options.mode }) }),
  };
  return { ctx, files };
}

// SEAL contexts are shared per parameter set while one is alive: holding one for each set the tests use keeps
// every build from paying SEAL's context setup again.
const held: HeContext[] = [];
beforeAll(async () => {
  for (const p of [undefined, { coeffModBits: [60, 40, 40] }]) {
    const keys = await generateHeKeys(p);
    keys.client.dispose();
    held.push(keys.server);
  }
});
afterAll(() => held.forEach((c) => c.dispose()));

// NVFlare f3b7c1b, tests/integration_test/data/projects/2_clients_with_he.yml, HEBuilder args (verbatim).
const flareArgs = { poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40], scale_bits: 40, scheme: 'CKKS' };

describe('heKitBuilder', () => {
  it("matches FLARE's HEBuilder path", () => {
    expect(heKitBuilder().matches).toEqual(['nvflare.lighter.impl.he.HEBuilder']);
    expect(HE_BUILDER_PATH).toBe('nvflare.lighter.impl.he.HEBuilder');
  });

  it('puts the client context (secret key, 0600) in client kits, the server context in the server kit, nothing in admin kits', async () => {
    const state = new Map<string, { bytes: Uint8Array; mode?: number }>();
    const { ctx, files } = buildContext(state, flareArgs);
    await heKitBuilder().build(ctx);
    expect([...files.keys()].sort()).toEqual([`localhost0/${HE_SERVER_CONTEXT_FILE}`, `site-1/${HE_CLIENT_CONTEXT_FILE}`, `site-2/${HE_CLIENT_CONTEXT_FILE}`]);
    expect(files.get(`site-1/${HE_CLIENT_CONTEXT_FILE}`)!.mode).toBe(0o600);
    expect(state.get(HE_STATE_FILE)!.mode).toBe(0o600);
    const serverCtx = await loadHeContext(files.get(`localhost0/${HE_SERVER_CONTEXT_FILE}`)!.bytes);
    const clientCtx = await loadHeContext(files.get(`site-1/${HE_CLIENT_CONTEXT_FILE}`)!.bytes);
    expect(serverCtx.hasSecretKey).toBe(false);
    expect(clientCtx.hasSecretKey).toBe(true);
    expect(serverCtx.id).toBe(clientCtx.id);
    expect(clientCtx.params.coeffModBits).toEqual([60, 40, 40]);
    expect(files.get(`site-2/${HE_CLIENT_CONTEXT_FILE}`)!.bytes).toEqual(files.get(`site-1/${HE_CLIENT_CONTEXT_FILE}`)!.bytes);
    serverCtx.dispose();
    clientCtx.dispose();
  });

  it('hands out the same keys when re-provisioning adds a site (keys kept in the CA state)', async () => {
    const state = new Map<string, { bytes: Uint8Array; mode?: number }>();
    const first = buildContext(state, undefined);
    await heKitBuilder().build(first.ctx);
    const more = [...participants, { name: 'site-3', type: 'client', org: 'org_b', props: {} } as KitParticipant];
    const second = buildContext(state, undefined, more);
    await heKitBuilder().build(second.ctx);
    expect(second.files.get(`site-3/${HE_CLIENT_CONTEXT_FILE}`)!.bytes).toEqual(first.files.get(`site-1/${HE_CLIENT_CONTEXT_FILE}`)!.bytes);
    expect(second.files.get(`localhost0/${HE_SERVER_CONTEXT_FILE}`)!.bytes).toEqual(first.files.get(`localhost0/${HE_SERVER_CONTEXT_FILE}`)!.bytes);
  });

  it('uses its own parameters when project.yml has no HEBuilder args, and the defaults otherwise', async () => {
    const state = new Map<string, { bytes: Uint8Array; mode?: number }>();
    const { ctx, files } = buildContext(state, undefined);
    await heKitBuilder({ coeffModBits: [60, 40, 40] }).build(ctx);
    const c = await loadHeContext(files.get(`site-1/${HE_CLIENT_CONTEXT_FILE}`)!.bytes);
    expect(c.params.coeffModBits).toEqual([60, 40, 40]);
    c.dispose();
  });

  it('refuses to re-provision with other parameters than the stored keys (E_HE_STATE_MISMATCH)', async () => {
    const state = new Map<string, { bytes: Uint8Array; mode?: number }>();
    await heKitBuilder().build(buildContext(state, flareArgs).ctx);
    await expectFlareCodeAsync(() => heKitBuilder().build(buildContext(state, { ...flareArgs, coeff_mod_bit_sizes: [60, 40, 40, 60] }).ctx), 'E_HE_STATE_MISMATCH');
  });

  it('refuses bad or insecure HEBuilder args (E_HE_INVALID_PARAMS, E_HE_INSECURE_PARAMS)', async () => {
    await expectFlareCodeAsync(() => heKitBuilder().build(buildContext(new Map(), { ...flareArgs, scheme: 'BFV' }).ctx), 'E_HE_INVALID_PARAMS');
    await expectFlareCodeAsync(() => heKitBuilder().build(buildContext(new Map(), { ...flareArgs, poly_modulus_degree: 4096 }).ctx), 'E_HE_INSECURE_PARAMS');
    await expectFlareCodeAsync(() => heKitBuilder({ polyModulusDegree: 1000 }), 'E_HE_INVALID_PARAMS');
  });
});
