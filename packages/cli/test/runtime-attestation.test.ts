// The attestation configuration a participant runs with (`attestation.json` / `--attestation`), and
// `flare client` / `flare server` refusing at start when it is wrong.
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Attester } from '@flare/cc-attest';
import { createTestAuthority, serializeTestAuthority } from '@flare/cc-attest/testing';
import { isFlareError } from '@flare/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ATTESTATION_CONFIG_FILE, AttestationConfig, attestationFor, readAttestationConfig } from '../src/poc/attestation-config.js';

let dir: string;
let authorityFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-attest-cfg-'));
  authorityFile = join(dir, 'authority.json');
  await writeFile(authorityFile, serializeTestAuthority(createTestAuthority()));
});

/** A kit folder with (or without) a provisioned attestation policy, and a workspace beside it. */
async function kit(name: string, policy?: object): Promise<{ kit: string; ws: string }> {
  const k = join(dir, name);
  await mkdir(join(k, 'local'), { recursive: true });
  if (policy !== undefined) await writeFile(join(k, 'local', 'attestation_policy.json.default'), JSON.stringify(policy));
  const ws = join(dir, `${name}-ws`);
  await mkdir(ws, { recursive: true });
  return { kit: k, ws };
}

describe('attestation.json', () => {
  it('defaults: no attesters, re-check every 600 s (FLARE), 30 s to answer', () => {
    expect(AttestationConfig.parse({})).toEqual({ attesters: [], interval_s: 600, timeout_s: 30 });
  });

  it('refuses unknown fields and attester kinds (E_RUNTIME_CONFIG names the field)', async () => {
    for (const bad of [{ attesters: [{ kind: 'sgx' }] }, { interval: 5 }, { attesters: [{ kind: 'command', type: 'gpu' }] }]) {
      const f = join(dir, `bad-${JSON.stringify(bad).length}.json`);
      await writeFile(f, JSON.stringify(bad));
      await expect(readAttestationConfig(f)).rejects.toMatchObject({ code: 'E_RUNTIME_CONFIG' });
    }
    const dup = join(dir, 'dup.json');
    await writeFile(dup, '{"interval_s": 1, "interval_s": 2}');
    await expect(readAttestationConfig(dup)).rejects.toMatchObject({ code: 'E_RUNTIME_CONFIG' });
  });

  it('no policy in the kit and no attester: the participant neither asks for nor gives evidence', async () => {
    const k = await kit('none');
    expect(await attestationFor(k.kit, k.ws, undefined)).toBeUndefined();
  });

  it('the kit policy says what peers must present; attestation.json how this participant attests (test authority: test trust)', async () => {
    const k = await kit('poc', { version: 1, require: ['snp'], snp: {} });
    await writeFile(join(k.ws, ATTESTATION_CONFIG_FILE), JSON.stringify({ test_authority: authorityFile, attesters: [{ kind: 'test', type: 'snp' }], interval_s: 2 }));
    const o = (await attestationFor(k.kit, k.ws, undefined))!;
    expect(o.policy?.require).toEqual(['snp']);
    expect(o.trust?.label).toBe('test');
    expect(o.intervalMs).toBe(2000);
    expect(o.attesters!.map((a: Attester) => a.name)).toEqual(['test:snp']);
    // The test attester really produces SNP evidence with the nonce in REPORT_DATA.
    const [e] = await o.attesters![0]!.collect(new Uint8Array(64).fill(7));
    expect(e!.type).toBe('snp');
  });

  it('without a test authority, peers are verified against the pinned vendor roots (no trust override)', async () => {
    const k = await kit('vendor', { version: 1, require: ['snp'] });
    const f = join(dir, 'vendor.json');
    await writeFile(f, JSON.stringify({ attesters: [{ kind: 'configfs-tsm' }, { kind: 'command', type: 'gpu', command: '/opt/flare/gpu-evidence', args: ['--nonce', '{nonce}'] }] }));
    const o = (await attestationFor(k.kit, k.ws, f))!;
    expect(o.trust).toBeUndefined();
    expect(o.attesters!.map((a: Attester) => a.name)).toEqual(['configfs-tsm', 'external:gpu']);
  });

  it('a test attester without a test authority is refused (E_RUNTIME_CONFIG)', async () => {
    const k = await kit('noauth');
    await writeFile(join(k.ws, ATTESTATION_CONFIG_FILE), JSON.stringify({ attesters: [{ kind: 'test' }] }));
    const e = await attestationFor(k.kit, k.ws, undefined).catch((x: unknown) => x);
    expect(isFlareError(e, 'E_RUNTIME_CONFIG')).toBe(true);
  });

  it('an invalid policy in the kit stops the participant (E_ATTEST_POLICY), never falls back to no attestation', async () => {
    const k = await kit('badpolicy', { version: 1, require: ['sgx'] });
    const e = await attestationFor(k.kit, k.ws, undefined).catch((x: unknown) => x);
    expect(isFlareError(e, 'E_ATTEST_POLICY')).toBe(true);
  });

  it('a named --attestation file that does not exist is an error, not silence', async () => {
    const k = await kit('missing');
    const e = await attestationFor(k.kit, k.ws, join(dir, 'nope.json')).catch((x: unknown) => x);
    expect(isFlareError(e, 'E_RUNTIME_CONFIG')).toBe(true);
  });
});
