// `flare poc --secagg [--dp]` as a user runs it, with real processes: 5 sites, site-2 killed in the masked-input
// phase and site-4 during unmasking (the FLARE_TEST_SECAGG_EXIT_AT test hook makes each exit at exactly that
// phase: no timing); the round completes with the survivors' sum, and with --dp (distributed DP) each summed
// site reports the epsilon its own ledger spent.
// The sites also write their plaintext updates through the FLARE_TEST_SECAGG_RECORD test hook, so the test can
// check the global model against the plaintext mean of the summed sites' (clipped) updates.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeModel, type FLModel } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { FLARE_BIN, tempDir, type Finished } from './support.js';

function flareWithEnv(args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<Finished> {
  return new Promise((done) => {
    execFile(process.execPath, [FLARE_BIN, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

/** The model's float tensors as one vector, by sorted name (the layout secure aggregation sums). */
function flat(m: FLModel): Float64Array {
  const names = [...m.params.keys()].sort();
  const parts = names.map((n) => Float64Array.from(m.params.get(n)!.data as Float32Array));
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface Summary {
  status: string;
  rounds: Array<{ round: number; contributors: string[] }>;
  sites: Array<{ name: string; epsilon: number | null }>;
  secagg: { clip: number; rounds: Array<{ round: number; masked: number; summed: string[]; dropped: Record<string, string[]> }> };
}

describe('flare poc --secagg', () => {
  it('5 sites, one killed while masking its input and one while unmasking: the round completes with the survivors\' sum', async () => {
    const ws = await tempDir('flare-poc-secagg-e2e-');
    const r = await flareWithEnv(
      ['poc', '--secagg', '--clients', '5', '--rounds', '1', '--json', '--workspace', ws],
      { FLARE_TEST_SECAGG_EXIT_AT: 'site-2:masked-input,site-4:unmask', FLARE_TEST_SECAGG_RECORD: '1' },
      290_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Summary;
    expect(s.status).toBe('FINISHED');
    // site-4 sent its masked input before it was killed: it is in the sum; site-2 never sent one.
    expect(s.rounds[0]!.contributors).toEqual(['site-1', 'site-3', 'site-4', 'site-5']);
    expect(s.secagg.rounds[0]).toMatchObject({ masked: 4, summed: ['site-1', 'site-3', 'site-4', 'site-5'] });
    expect(s.secagg.rounds[0]!.dropped['maskedInput']).toEqual(['site-2']);
    expect(s.secagg.rounds[0]!.dropped['unmask']).toEqual(['site-4']);

    // The global model moved by exactly the plaintext mean of the summed sites' clipped updates (up to the
    // ring's quantisation).
    const prod = join(ws, 'flare_poc', 'prod_00');
    const initial = flat(decodeModel(new Uint8Array(await readFile(join(ws, 'jobs', 'spam', 'model.safetensors')))));
    const jobs = join(prod, 'localhost-workspace', 'jobs');
    const [job] = await readdir(jobs);
    const cp = join(jobs, job!, 'checkpoint');
    const file = (await readdir(cp)).find((f) => f.endsWith('.safetensors'))!;
    const global = flat(decodeModel(new Uint8Array(await readFile(join(cp, file)))));
    const sum = new Float64Array(initial.length);
    for (const site of ['site-1', 'site-3', 'site-4', 'site-5']) {
      const u = JSON.parse(await readFile(join(prod, `${site}-workspace`, 'secagg-test-update-0.json'), 'utf8')) as number[];
      expect(u).toHaveLength(initial.length);
      const norm = Math.sqrt(u.reduce((a, x) => a + x * x, 0));
      const f = norm > s.secagg.clip ? s.secagg.clip / norm : 1;
      for (let i = 0; i < u.length; i++) sum[i] = sum[i]! + u[i]! * f;
    }
    let worst = 0;
    let moved = 0;
    for (let i = 0; i < initial.length; i++) {
      worst = Math.max(worst, Math.abs(global[i]! - initial[i]! - sum[i]! / 4));
      moved = Math.max(moved, Math.abs(sum[i]! / 4));
    }
    expect(moved).toBeGreaterThan(1e-3);
    expect(worst).toBeLessThan(1e-3);
  }, 300_000);

  it('with --dp (distributed DP): the same kills, and each summed site reports the epsilon its own ledger spent, within its budget', async () => {
    const ws = await tempDir('flare-poc-secagg-dp-e2e-');
    const r = await flareWithEnv(['poc', '--secagg', '--dp', '--clients', '5', '--rounds', '1', '--json', '--workspace', ws], { FLARE_TEST_SECAGG_EXIT_AT: 'site-2:masked-input,site-4:unmask' }, 290_000);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Summary;
    expect(s.status).toBe('FINISHED');
    expect(s.rounds[0]!.contributors).toEqual(['site-1', 'site-3', 'site-4', 'site-5']);
    expect(s.secagg.rounds[0]!.dropped['maskedInput']).toEqual(['site-2']);
    for (const site of ['site-1', 'site-3', 'site-4', 'site-5']) {
      const eps = s.sites.find((x) => x.name === site)?.epsilon;
      expect(eps, site).toBeGreaterThan(0);
      // The poc's budget per site (FLARE_POC_DP_MAX, default 4): the noise was calibrated to stay within it.
      expect(eps!, site).toBeLessThanOrEqual(4);
    }
    // site-2 left before its masked input: it released nothing noised, and the summary has no epsilon from it.
    expect(s.sites.find((x) => x.name === 'site-2')?.epsilon).toBeNull();
  }, 300_000);
});
