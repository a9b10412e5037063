// `flare poc --attest test` as a user runs it: every participant attests to its peers with synthetic SEV-SNP
// evidence from one test authority in the workspace (login both ways, before the deploy, every 2 s); a site
// whose evidence shows a debuggable guest is refused by the default policy and the audit logs say why.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flare, tempDir } from './support.js';


type Line = { action: string; user?: string; msg?: string; data?: Record<string, unknown> };
const audit = async (file: string): Promise<Line[]> =>
  (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);

describe('flare poc --attest test', () => {
  it('refuses a site with failing evidence (a debug guest: E_ATTEST_POLICY_DEBUG), runs the job with the attested sites, and the audit logs say why', async () => {
    const ws = await tempDir('flare-poc-attest-e2e-');
    const r = await flare(['poc', '--attest', 'test', '--attest-debug-site', 'site-3', '--rounds', '3', '--json', '--workspace', ws], 600_000);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as {
      status: string;
      rounds: Array<{ contributors: string[] }>;
      sites: Array<{ name: string; bytes: number; refused?: string }>;
      audit: { verified: boolean; problems: string[] };
      attestation: { mode: string; verified: number; periodic: number; refused: Array<{ by: string; peer: string; purpose: string; code: string; reason: string }> };
    };
    expect(s.status).toBe('FINISHED');
    // The refused site stops at once, and the poc does not wait for a site whose process has ended.
    expect(r.stderr).toContain('site-3 exited before registering');
    for (const x of s.rounds) expect(x.contributors).toEqual(['site-1', 'site-2']);
    expect(s.sites.find((x) => x.name === 'site-3')).toMatchObject({ bytes: 0, refused: expect.stringMatching(/^E_ATTEST_POLICY_DEBUG: /) });
    expect(s.attestation.mode).toBe('test');
    expect(s.attestation.refused).toEqual([{ by: 'localhost', peer: 'site-3', purpose: 'login#1', code: 'E_ATTEST_POLICY_DEBUG', reason: expect.stringContaining('DEBUG') }]);
    // Both directions at login and before the deploy for sites 1 and 2, plus site-3 checking the server: 9.
    expect(s.attestation.verified).toBeGreaterThanOrEqual(9);
    expect(s.audit).toEqual({ verified: true, problems: [] });

    const prod = join(ws, 'flare_poc', 'prod_00');
    const server = await audit(join(prod, 'localhost-workspace', 'audit.jsonl'));
    const refused = server.filter((e) => e.action === 'attestation_refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ user: 'site-3', data: { code: 'E_ATTEST_POLICY_DEBUG', check: 'policy.snp.debug', purpose: 'login#1' } });
    expect(refused[0]!.msg).toMatch(/site-3 refused at login: E_ATTEST_POLICY_DEBUG: the guest policy allows DEBUG/);
    const verified = server.filter((e) => e.action === 'attestation_verified');
    for (const site of ['site-1', 'site-2']) {
      const purposes = verified.filter((e) => e.user === site).map((e) => String(e.data?.['purpose']));
      expect(purposes[0]).toBe('login#1');
      expect(purposes.some((p) => p.startsWith('deploy:'))).toBe(true);
    }
    expect(server.some((e) => e.action === 'client_registered' && e.user === 'site-3')).toBe(false);
    // The refused site's own log: the server's reason, then it stopped; it never received a task.
    const site3 = await audit(join(prod, 'site-3-workspace', 'audit.jsonl'));
    expect(site3.find((e) => e.action === 'attestation_refused_by_peer')).toMatchObject({ data: { code: 'E_ATTEST_POLICY_DEBUG' } });
    expect(site3.some((e) => e.action === 'task_received')).toBe(false);
    // The sites verified the server too (the other direction).
    const site1 = await audit(join(prod, 'site-1-workspace', 'audit.jsonl'));
    expect(site1.filter((e) => e.action === 'attestation_verified' && e.user === 'localhost').length).toBeGreaterThanOrEqual(2);
    expect(await readFile(join(ws, 'logs', 'site-3.log'), 'utf8')).toContain('E_ATTEST_POLICY_DEBUG');
  });
});
