import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type * as CcAttest from '@flare/cc-attest';
import type { Attester } from '@flare/cc-attest';
import type * as CcAttestTesting from '@flare/cc-attest/testing';
import { FlareRuntimeError, parseStrictJson, type Logger } from '@flare/core';
import { loadOptionalPeer, type AttestationOptions } from '@flare/runtime';
import { z } from 'zod';

/** The file a participant's workspace may hold to configure how it attests (`--attestation` names another). */
export const ATTESTATION_CONFIG_FILE = 'attestation.json';

/** SEV-SNP GUEST_POLICY with DEBUG (bit 19, ABI 56860) and the reserved bit 17 set: a debuggable guest. */
const DEBUG_GUEST_POLICY = 0x30000n | (1n << 19n);

const Attesters = z.discriminatedUnion('kind', [
  /** SEV-SNP or TDX evidence from the Linux configfs-tsm interface (a confidential VM, kernel >= 6.7). */
  z.strictObject({ kind: z.literal('configfs-tsm'), root: z.string().max(4096).optional(), privlevel: z.int().min(0).max(3).optional() }),
  /** Evidence from a vendor tool (GPUs): run without a shell, `{nonce}` in args replaced by the nonce in hex. */
  z.strictObject({
    kind: z.literal('command'),
    type: z.enum(['snp', 'tdx', 'gpu']),
    command: z.string().min(1).max(4096),
    args: z.array(z.string().max(4096)).max(64).default([]),
    timeout_s: z.number().positive().max(600).optional(),
  }),
  /** Synthetic evidence signed by `test_authority` (flare poc --attest test); `debug` reports a debuggable guest. */
  z.strictObject({ kind: z.literal('test'), type: z.enum(['snp', 'gpu']).default('snp'), debug: z.boolean().default(false) }),
]);

/**
 * A participant's attestation configuration (`<workspace>/attestation.json`, or `--attestation FILE`): how it
 * produces evidence about itself when a peer asks, and how often it re-checks its peers. What it requires of
 * its peers is its kit's attestation policy (`local/attestation_policy.json[.default]`, signed by the project).
 * Relative paths are relative to the file.
 *
 * @example
 * ```json
 * { "attesters": [{ "kind": "configfs-tsm" }, { "kind": "command", "type": "gpu", "command": "/opt/flare/gpu-evidence", "args": ["--nonce", "{nonce}"] }],
 *   "interval_s": 600 }
 * ```
 */
export const AttestationConfig = z.strictObject({
  attesters: z.array(Attesters).max(8).default([]),
  /**
   * TEST ONLY: a serialized test authority (`flare poc --attest test` writes one). Test attesters sign with it
   * and peers' evidence is verified against it INSTEAD of the pinned vendor roots.
   */
  test_authority: z.string().min(1).max(4096).optional(),
  /** Re-check every peer this often (default 600 s, FLARE's); 0: only at login and before deploys. */
  interval_s: z.number().min(0).max(7 * 24 * 3600).default(600),
  /** How long a peer has to answer an evidence request. */
  timeout_s: z.number().positive().max(600).default(30),
  /** Allow fetching vendor collateral and revocation data (AMD KDS, Intel PCS, NVIDIA RIM/OCSP), cached here. */
  fetch_cache_dir: z.string().min(1).max(4096).optional(),
});
/** A parsed attestation configuration. */
export type AttestationConfig = z.output<typeof AttestationConfig>;

/** Reads and validates an attestation configuration file. @throws FlareRuntimeError E_RUNTIME_CONFIG naming the file */
export async function readAttestationConfig(file: string): Promise<AttestationConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `cannot read the attestation configuration ${file}`, { cause });
  }
  let value: unknown;
  try {
    value = parseStrictJson(text, { maxDepth: 8 });
  } catch (cause) {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `${file} is not valid JSON${cause instanceof Error ? ` (${cause.message})` : ''}`, { cause });
  }
  const r = AttestationConfig.safeParse(value);
  if (!r.success) throw new FlareRuntimeError('E_RUNTIME_CONFIG', `${file}: ${r.error.issues[0]?.path.join('.') || '(root)'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

/**
 * The runtime's attestation options for a participant: the policy from its kit, the attesters and settings from
 * its attestation configuration (`file`, else `<workspace>/attestation.json` when present). Undefined when the
 * kit has no policy and no attester is configured: the participant neither asks for nor gives evidence.
 *
 * @throws AttestError E_ATTEST_POLICY (an invalid policy file), FlareRuntimeError E_RUNTIME_CONFIG
 */
export async function attestationFor(kitDir: string, workspace: string, file: string | undefined, logger?: Logger): Promise<AttestationOptions | undefined> {
  const path = file ?? join(workspace, ATTESTATION_CONFIG_FILE);
  const exists = (p: string): Promise<boolean> => readFile(p).then(() => true, () => false);
  const present = file !== undefined || (await exists(path));
  // @flare/cc-attest (an optional peer) is loaded only when the kit has an attestation policy or attesters are configured.
  const policyFiles = ['attestation_policy.json', 'attestation_policy.json.default'].map((f) => join(kitDir, 'local', f));
  if (!present && !(await Promise.all(policyFiles.map(exists))).some(Boolean)) return undefined;
  const { ConfigfsTsmAttester, ExternalCommandAttester, createCachingFetcher, loadAttestationPolicy } = await loadOptionalPeer<typeof CcAttest>('@flare/cc-attest', `attestation (${present ? path : 'the kit\'s attestation policy'})`);
  const policy = await loadAttestationPolicy(kitDir);
  const config = present ? await readAttestationConfig(path) : AttestationConfig.parse({});
  const at = (p: string): string => (isAbsolute(p) ? p : resolve(dirname(path), p));
  // The test authority and TestAttester live in cc-attest's testing subpath (flare poc --attest test only).
  const testing = config.test_authority === undefined ? undefined : await loadOptionalPeer<typeof CcAttestTesting>('@flare/cc-attest/testing', `the test attester of ${path}`);
  const authority = config.test_authority === undefined || testing === undefined ? undefined : testing.loadTestAuthority(await readFile(at(config.test_authority), 'utf8'));
  const TestAttester = testing?.TestAttester;
  const attesters: Attester[] = config.attesters.map((a) => {
    if (a.kind === 'configfs-tsm') return new ConfigfsTsmAttester({ ...(a.root === undefined ? {} : { root: a.root }), ...(a.privlevel === undefined ? {} : { privlevel: a.privlevel }) });
    if (a.kind === 'command') return new ExternalCommandAttester({ type: a.type, command: a.command, args: a.args, ...(a.timeout_s === undefined ? {} : { timeoutMs: a.timeout_s * 1000 }) });
    if (authority === undefined || TestAttester === undefined) throw new FlareRuntimeError('E_RUNTIME_CONFIG', `${path}: a "test" attester needs "test_authority"`);
    return a.type === 'gpu' ? new TestAttester(authority, { type: 'gpu' }) : new TestAttester(authority, { type: 'snp', ...(a.debug ? { snp: { policy: DEBUG_GUEST_POLICY } } : {}) });
  });
  if (policy === undefined && attesters.length === 0) return undefined;
  if (authority !== undefined) logger?.warn('attestation uses a TEST authority instead of the vendor roots: for flare poc only', { file: path });
  logger?.info('attestation', { requires: policy?.require ?? [], attesters: attesters.map((a) => a.name), interval_s: config.interval_s });
  return {
    ...(policy === undefined ? {} : { policy }),
    attesters,
    ...(authority === undefined ? {} : { trust: authority.trust }),
    ...(config.fetch_cache_dir === undefined ? {} : { fetcher: createCachingFetcher({ cacheDir: at(config.fetch_cache_dir) }) }),
    intervalMs: config.interval_s * 1000,
    timeoutMs: config.timeout_s * 1000,
  };
}
