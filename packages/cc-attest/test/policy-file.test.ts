import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAttestationPolicy } from '../src/index.js';

async function kit(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flare-kit-'));
  await mkdir(join(dir, 'local'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, 'local', name), text);
  return dir;
}

describe('loadAttestationPolicy', () => {
  it('reads local/attestation_policy.json over the provisioned .default when it is at least as strict', async () => {
    const dir = await kit({ 'attestation_policy.json.default': '{"version":1,"require":["snp"]}', 'attestation_policy.json': '{"version":1,"require":["snp","tdx"]}' });
    expect((await loadAttestationPolicy(dir))?.require).toEqual(['snp', 'tdx']);
  });

  it("refuses the site's own policy when it is weaker than the signed default (E_ATTEST_POLICY_WEAKER)", async () => {
    const dir = await kit({ 'attestation_policy.json.default': '{"version":1,"require":["snp"]}', 'attestation_policy.json': '{"version":1,"require":["tdx"]}' });
    await expect(loadAttestationPolicy(dir)).rejects.toMatchObject({ code: 'E_ATTEST_POLICY_WEAKER', message: expect.stringMatching(/"require" lacks snp/) });
  });

  it('falls back to the .default, and returns undefined when the site has no policy', async () => {
    expect((await loadAttestationPolicy(await kit({ 'attestation_policy.json.default': '{"version":1,"require":["gpu"]}' })))?.require).toEqual(['gpu']);
    expect(await loadAttestationPolicy(await kit({}))).toBeUndefined();
  });

  it('refuses an invalid override instead of silently using the default (E_ATTEST_POLICY)', async () => {
    const dir = await kit({ 'attestation_policy.json.default': '{"version":1}', 'attestation_policy.json': '{"version":1,"snp":{"debug":true}}' });
    await expect(loadAttestationPolicy(dir)).rejects.toMatchObject({ code: 'E_ATTEST_POLICY', message: expect.stringMatching(/attestation_policy\.json:/) });
  });
});
