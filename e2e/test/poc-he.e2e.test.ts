// `flare poc --he --json` as a user runs it: the sites encrypt their updates (CKKS), the server aggregates
// ciphertexts with a context that holds no secret key, the global model stays encrypted at the server, and a
// plaintext twin of the same federation gives the overhead figures.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeModel } from '@flare/core';
import { heDecrypt, isEncryptedModel, loadHeContextFromKit } from '@flare/filters-he';
import { describe, expect, it } from 'vitest';
import { flare, tempDir } from './support.js';


interface Compared {
  he: number;
  plain: number;
  ratio: number | null;
}

describe('flare poc --he', () => {
  it('trains with encrypted aggregation, the server never holding a secret key, and reports the overhead against a plaintext twin', async () => {
    const ws = await tempDir('flare-poc-he-e2e-');
    const r = await flare(['poc', '--he', '--rounds', '3', '--json', '--workspace', ws], 290_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const s = JSON.parse(lines[0]!) as {
      status: string;
      rounds: Array<{ round: number; accuracy: number; contributors: string[] }>;
      sites: Array<{ name: string; bytes: number }>;
      audit: { verified: boolean; problems: string[] };
      he: {
        compared_with: string;
        seconds_per_round: Compared;
        bytes_per_site_per_round: Compared;
        update_bytes: Compared;
        server_aggregate_seconds_per_round: Compared;
        site_encrypt_ms_per_round: number;
        site_decrypt_ms_per_round: number;
        parameters: number;
        final_accuracy: { he: number; plain: number };
        twin_workspace: string;
      };
    };
    expect(s.status).toBe('FINISHED');
    expect(s.rounds.map((x) => x.contributors)).toEqual([0, 1, 2].map(() => ['site-1', 'site-2', 'site-3']));
    expect(s.rounds[2]!.accuracy).toBeGreaterThan(0.85);
    expect(s.audit).toEqual({ verified: true, problems: [] });
    // The overhead: what it is compared with, and figures that can only come from real ciphertexts.
    expect(s.he.compared_with).toMatch(/plaintext twin/);
    expect(s.he.parameters).toBe(1025);
    expect(s.he.update_bytes.plain).toBe(4100);
    expect(s.he.update_bytes.he).toBeGreaterThan(100_000); // one seeded CKKS ciphertext (N = 8192) with zstd
    expect(s.he.bytes_per_site_per_round.ratio).toBeGreaterThan(10);
    expect(s.he.site_encrypt_ms_per_round).toBeGreaterThan(0);
    expect(s.he.site_decrypt_ms_per_round).toBeGreaterThan(0);
    expect(s.he.seconds_per_round.he).toBeGreaterThan(0);
    expect(s.he.seconds_per_round.plain).toBeGreaterThan(0);
    // CKKS errors (~1e-8) do not change what the model learns.
    expect(Math.abs(s.he.final_accuracy.he - s.he.final_accuracy.plain)).toBeLessThan(0.02);

    const prod = join(ws, 'flare_poc', 'prod_00');
    // The server kit has only the server context; the server's audit saw ciphertexts, never norms.
    const serverCtx = await loadHeContextFromKit(join(prod, 'localhost'), 'server');
    expect(serverCtx.hasSecretKey).toBe(false);
    serverCtx.dispose();
    const serverAudit = (await readFile(join(prod, 'localhost-workspace', 'audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { action: string; data?: Record<string, unknown> });
    const accepted = serverAudit.filter((e) => e.action === 'result_accepted');
    expect(accepted).toHaveLength(9);
    for (const e of accepted) {
      expect(e.data?.['encrypted']).toBe(true);
      expect(e.data).not.toHaveProperty('norm');
    }
    // The global model the server checkpointed is encrypted; a site's key decrypts it.
    const jobs = join(prod, 'localhost-workspace', 'jobs');
    const [job] = await readdir(jobs);
    const cp = join(jobs, job!, 'checkpoint');
    const file = (await readdir(cp)).find((f) => f.endsWith('.safetensors'))!;
    const global = decodeModel(new Uint8Array(await readFile(join(cp, file))));
    expect(isEncryptedModel(global)).toBe(true);
    const siteCtx = await loadHeContextFromKit(join(prod, 'site-1'), 'client');
    const plain = await heDecrypt({ context: siteCtx, requireEncrypted: true }).apply(global, { site: 'site-1', job: job!, round: 3 });
    siteCtx.dispose();
    expect([...plain.params.values()].reduce((n, t) => n + t.data.length, 0)).toBe(1025);
    // Sites had the HE filters in their own privacy policy.
    const site1 = await readFile(join(prod, 'site-1-workspace', 'audit.jsonl'), 'utf8');
    expect(site1).toContain('"action":"he_encrypted"');
    expect(site1).toContain('"action":"he_decrypted"');
  });
});
