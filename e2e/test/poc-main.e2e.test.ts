// The main job as a user runs it: `flare poc --json` provisions, starts a server and three sites as separate
// processes over mTLS with @flare/auth sessions, trains on the SpamAssassin corpus and verifies every audit log.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flare, tempDir } from './support.js';


describe('flare poc (the main job)', () => {
  it('trains a real model across 3 non-IID sites over mTLS and prints one JSON summary with a verified audit trail', async () => {
    const ws = await tempDir('flare-poc-e2e-');
    const r = await flare(['poc', '--rounds', '3', '--json', '--workspace', ws], 600_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1); // --json: exactly one JSON object on stdout, progress on stderr
    const s = JSON.parse(lines[0]!) as {
      status: string;
      dataset: string;
      rounds: Array<{ round: number; accuracy: number; loss: number; seconds: number; contributors: string[] }>;
      sites: Array<{ name: string; epsilon: number | null; bytes: number }>;
      audit: { verified: boolean; problems: string[] };
    };
    expect(s.status).toBe('FINISHED');
    expect(s.dataset).toBe('spam-assassin');
    expect(s.rounds.map((x) => x.round)).toEqual([1, 2, 3]); // counted from 1, as the table shows them
    for (const x of s.rounds) {
      expect(x.contributors).toEqual(['site-1', 'site-2', 'site-3']);
      expect(x.seconds).toBeGreaterThan(0);
    }
    // Held-out accuracy improves and ends far above the majority class (about 69% ham).
    expect(s.rounds[2]!.accuracy).toBeGreaterThan(0.85);
    expect(s.rounds[2]!.loss).toBeLessThan(s.rounds[0]!.loss);
    expect(s.sites.map((x) => x.name)).toEqual(['site-1', 'site-2', 'site-3']);
    for (const x of s.sites) expect(x.bytes).toBeGreaterThan(0);
    expect(s.audit).toEqual({ verified: true, problems: [] });
    // The sites really are non-IID: their training shares of spam differ (site 1 mostly ham, site 3 mostly spam).
    const site1 = await readFile(join(ws, 'flare_poc', 'prod_00', 'site-1-workspace', 'audit.jsonl'), 'utf8');
    expect(site1).toContain('"action":"task_received"');
  });

  it('with --dp every site trains with DP-SGD and reports the epsilon its accountant charged', async () => {
    const ws = await tempDir('flare-poc-dp-e2e-');
    const r = await flare(['poc', '--rounds', '2', '--dp', '--json', '--workspace', ws], 600_000);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { sites: Array<{ name: string; epsilon: number | null }>; audit: { verified: boolean } };
    // 2 rounds x 50 steps of the subsampled Gaussian (z 1.0, q 0.02) at delta 1e-5: the RDP bound, about 1.84
    const { rdpEpsilon, BUDGET_ORDERS } = await import('@flare/filters-dp');
    const expected = rdpEpsilon({ noiseMultiplier: 1, samplingRate: 0.02, steps: 100, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    for (const x of s.sites) expect(x.epsilon).toBeCloseTo(expected, 6);
    expect(s.audit.verified).toBe(true);
    const site1 = await readFile(join(ws, 'flare_poc', 'prod_00', 'site-1-workspace', 'audit.jsonl'), 'utf8');
    expect(site1).toContain('"action":"dp_sgd_accounted"');
  });
});
