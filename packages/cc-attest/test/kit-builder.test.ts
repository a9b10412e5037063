import type { KitBuildContext, KitParticipant } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { ATTESTATION_POLICY_KIT_PATH, attestationPolicyKitBuilder, CC_BUILDER_PATHS, parseAttestationPolicy } from '../src/index.js';

function context(participants: KitParticipant[], args: KitBuildContext['args']) {
  const files: Array<{ participant: string; path: string; text: string }> = [];
  const ctx: KitBuildContext = {
    project: { name: 'p', participants },
    args,
    state: { read: async () => undefined, write: async () => {} },
    addFile: (participant, relPath, bytes) => files.push({ participant, path: relPath, text: new TextDecoder().decode(bytes) }),
  };
  return { ctx, files };
}

const people: KitParticipant[] = [
  { name: 'server1', type: 'server', org: 'a', props: {} },
  { name: 'site-1', type: 'client', org: 'a', props: { attestation_policy: { version: 1, require: ['snp', 'gpu'] } } },
  { name: 'site-2', type: 'client', org: 'b', props: {} },
  { name: 'admin@a.org', type: 'admin', org: 'a', props: {} },
];

describe('attestationPolicyKitBuilder', () => {
  it("answers to FLARE's CC builder path", () => {
    expect(attestationPolicyKitBuilder().matches).toContain('nvflare.lighter.cc_provision.impl.cc.CCBuilder');
    expect(CC_BUILDER_PATHS.length).toBeGreaterThan(0);
  });

  it('puts the project default, or the participant override, into server and client kits only', async () => {
    const { ctx, files } = context(people, { policy: { version: 1, require: ['snp'] } });
    await attestationPolicyKitBuilder().build(ctx);
    expect(files.map((f) => f.participant)).toEqual(['server1', 'site-1', 'site-2']);
    expect(files.every((f) => f.path === ATTESTATION_POLICY_KIT_PATH)).toBe(true);
    expect(parseAttestationPolicy(files[1]!.text).require).toEqual(['snp', 'gpu']);
    expect(parseAttestationPolicy(files[2]!.text).require).toEqual(['snp']);
  });

  it('writes nothing when no policy is configured', async () => {
    const { ctx, files } = context(people.filter((p) => p.name !== 'site-1'), undefined);
    await attestationPolicyKitBuilder().build(ctx);
    expect(files).toEqual([]);
  });

  it('refuses an invalid policy at provisioning time, naming the participant (E_ATTEST_POLICY)', async () => {
    const bad: KitParticipant[] = [{ name: 'site-9', type: 'client', org: 'a', props: { attestation_policy: { version: 1, snp: { alowDebug: true } } } }];
    const { ctx } = context(bad, undefined);
    await expect(async () => attestationPolicyKitBuilder().build(ctx)).rejects.toThrow(expect.objectContaining({ code: 'E_ATTEST_POLICY', message: expect.stringMatching(/site-9/) }));
  });
});
