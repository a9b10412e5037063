import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSiteConfig } from '../src/poc/site-config.js';
import { dpScope, pocDpSettings } from '../src/poc/dp-config.js';
import { renderSummary } from '../src/poc/poc.js';
import { auditLine, renderJobStatus } from '../src/commands/runtime.js';

const BIN = resolve(import.meta.dirname, '../dist/bin.js');
const flare = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 120_000 }, (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }));
  });

describe('flare server|client|admin|poc', () => {
  it('lists the runtime commands in help', async () => {
    const r = await flare(['--help']);
    for (const c of ['server', 'client', 'admin', 'poc']) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
  });

  it('exits 2 on usage errors (missing --kit, bad --clients)', async () => {
    expect((await flare(['server'])).code).toBe(2);
    expect((await flare(['poc', '--clients', 'x'])).code).toBe(2);
    expect((await flare(['admin', '--kit', '/nonexistent', 'frobnicate'])).code).toBe(2);
  });

  it('exits 2 on bad --attest, --attest-debug-site without --attest, and a bad --max-message-mib', async () => {
    expect((await flare(['poc', '--attest', 'real'])).code).toBe(2);
    const r = await flare(['poc', '--attest-debug-site', 'site-1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--attest-debug-site needs --attest test');
    expect((await flare(['poc', '--attest', 'test', '--attest-debug-site', '../etc'])).code).toBe(2);
    expect((await flare(['server', '--kit', '/nonexistent', '--max-message-mib', '0'])).code).toBe(2);
  });

  it('documents --he, --attest and the attestation configuration in help', async () => {
    expect((await flare(['poc', '--help'])).stdout).toMatch(/--he .*--attest <mode>/s);
    expect((await flare(['client', '--help'])).stdout).toContain('--attestation <file>');
    expect((await flare(['server', '--help'])).stdout).toContain('--max-message-mib <n>');
  });

  it('exits 1 with a coded line when the kit folder is not a kit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flare-notkit-'));
    const r = await flare(['client', '--kit', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_[A-Z_]+: .* What to do: /);
  });
});

describe('site.json', () => {
  it('a missing file admits nothing and names no data', async () => {
    const c = await readSiteConfig(await mkdtemp(join(tmpdir(), 'flare-site-')));
    expect(c).toEqual({ components: { allow: [], byoc: false } });
  });

  it('a bad file is refused naming the file and the field (E_RUNTIME_CONFIG, not a --workspace hint)', async () => {
    const ws = await mkdtemp(join(tmpdir(), 'flare-site-'));
    await writeFile(join(ws, 'site.json'), '{ "data": { "site": 0, "sites": 3 }, "colour": 1 }');
    await expect(readSiteConfig(ws)).rejects.toMatchObject({ code: 'E_RUNTIME_CONFIG', message: expect.stringContaining(join(ws, 'site.json')) as unknown });
    await writeFile(join(ws, 'site.json'), '{ "data": ');
    await expect(readSiteConfig(ws)).rejects.toMatchObject({ code: 'E_RUNTIME_CONFIG', message: expect.stringContaining('is not valid JSON') as unknown });
  });
});

describe('poc --dp scope', () => {
  it('defaults to DP-SGD (z 1.0, clip 1, q 0.02, sgd lr 6) accounted by dp-sgd with budget epsilon 4 at delta 1e-5; environment overrides', () => {
    const dp = dpScope(pocDpSettings({}));
    expect(dp.filters).toEqual([{ name: 'dp-sgd', args: { budget: { maxEpsilon: 4, delta: 1e-5 }, minNoiseMultiplier: 1 } }]);
    expect(dp.components).toEqual(['dp-sgd']);
    expect(dp.learner).toEqual({ optimizer: 'sgd', learning_rate: 6, dp_sgd: { noise_multiplier: 1, clip_norm: 1, sampling_rate: 0.02 } });
    const custom = dpScope(pocDpSettings({ FLARE_POC_DP_Z: '1.1', FLARE_POC_DP_Q: '0.05', FLARE_POC_DP_MAX: '2' }));
    expect(custom.learner['dp_sgd']).toEqual({ noise_multiplier: 1.1, clip_norm: 1, sampling_rate: 0.05 });
    // the site demands at least the noise the job is configured with
    expect(custom.filters[0]!.args).toEqual({ budget: { maxEpsilon: 2, delta: 1e-5 }, minNoiseMultiplier: 1.1 });
    expect(pocDpSettings({ FLARE_POC_DP_Z: 'abc' }).noiseMultiplier).toBe(1);
  });
});

describe('admin status and audit, readable', () => {
  it('renders the job, why it failed, each site with its own code and the rounds counted from 1', () => {
    const record = {
      id: '0f0e0d0c-0b0a-4908-8706-050403020100',
      name: 'spam',
      submitter: { name: 'admin@a.org', org: 'a' },
      status: 'FAILED' as const,
      submitted_at: '2026-01-01T10:00:00.000Z',
      rounds_done: 1,
      error: { code: 'E_ML_WEIGHTS_MISMATCH', message: 'round 1: every site failed with E_ML_WEIGHTS_MISMATCH' },
      sites: ['site-1'],
      refused: { 'site-2': 'E_POLICY_SCOPE: privacy scope "x" is not defined at this site' },
      history: [{ round: 0, contributors: ['site-1'], seconds: 1.5, bytes: {}, metrics: { accuracy: 0.9, accuracy_min: 0.8, accuracy_max: 0.95, loss: 0.3 }, site_metrics: {} }],
    };
    const lines = renderJobStatus({
      record,
      sites: [
        { name: 'site-1', connected: true, last_seen: '2026-01-01T10:01:00.000Z', running: false, deployed: true, contributions: [0] },
        { name: 'site-2', connected: false, running: false, deployed: false, refused: record.refused['site-2'], contributions: [] },
      ],
    });
    expect(lines[0]).toMatch(/FAILED/);
    expect(lines[1]).toBe('why: E_ML_WEIGHTS_MISMATCH: round 1: every site failed with E_ML_WEIGHTS_MISMATCH');
    expect(lines.find((l) => l.startsWith('site-1'))).toMatch(/connected .* deployed +1$/);
    expect(lines.find((l) => l.startsWith('site-2'))).toMatch(/gone .* refused\/left/);
    expect(lines.some((l) => l.includes('E_POLICY_SCOPE: privacy scope'))).toBe(true);
    expect(lines.find((l) => l.trimStart().startsWith('1  0.9000'))).toContain('(0.8000..0.9500)');
  });

  it('lists the sites behind an aggregating relay under its row (the first 20, and how many more), and marks a lost relay', () => {
    const record = {
      id: 'j2', name: 'hier', submitter: { name: 'admin@a.org', org: 'a' }, status: 'RUNNING' as const, submitted_at: '2026-01-01T10:00:00.000Z', rounds_done: 0,
      sites: ['agg-a', 'agg-b'], refused: {}, history: [],
    };
    const behind = (relay: string, n: number, lost = false) =>
      Array.from({ length: n }, (_, i) => ({ name: `${relay}-site-${i + 1}`, org: '', connected: !lost, lastSeen: '2026-01-01T10:00:00.000Z', via: [relay], behind: relay, relayLost: lost }));
    const lines = renderJobStatus({
      record,
      sites: [
        { name: 'agg-a', connected: true, running: true, deployed: true, contributions: [] },
        { name: 'agg-b', connected: false, running: false, deployed: true, contributions: [] },
      ],
      relaySites: [...behind('agg-a', 2), ...behind('agg-b', 25, true)],
    });
    const under = (relay: string): string | undefined => lines[lines.findIndex((l) => l.startsWith(relay)) + 1];
    expect(under('agg-a')?.trim()).toBe('2 sites behind it: agg-a-site-1, agg-a-site-2');
    expect(under('agg-b')?.trim()).toMatch(/^25 sites behind it \(relay lost: last known\): agg-b-site-1, .*agg-b-site-20, and 5 more \(--json lists them all\)$/);
  });

  it('prints an audit event as one readable line (time, who, action, user, job, message)', () => {
    const l = auditLine(JSON.stringify({ ts: '2026-01-01T10:00:00.123Z', site: 'server', action: 'deploy_refused', user: 'admin@a.org', job: '0f0e0d0c-0b0a', msg: 'site-2 refused the job' }));
    expect(l).toBe('2026-01-01 10:00:00Z  server  deploy_refused  user=admin@a.org  job=0f0e0d0c  site-2 refused the job');
    expect(auditLine('not json')).toBe('not json');
  });
});

describe('poc summary', () => {
  it('renders rounds, sites and the audit verdict', () => {
    const lines = renderSummary({
      dataset: 'spam-assassin',
      workspace: '/w',
      job: 'j',
      status: 'FINISHED',
      seconds: 12.5,
      rounds: [{ round: 1, accuracy: 0.9, loss: 0.3, seconds: 1.5, contributors: ['site-1'] }],
      sites: [{ name: 'site-1', epsilon: 3.2, bytes: 1000 }],
      audit: { verified: false, problems: ['site-1: line 3: hash'] },
    });
    expect(lines.join('\n')).toContain('0.9000');
    expect(lines.join('\n')).toContain('3.200');
    expect(lines.at(-1)).toBe('audit: NOT verified: site-1: line 3: hash');
  });

  it('renders the HE overhead against the plaintext twin, attestation refusals and refused sites', () => {
    const c = (he: number, plain: number) => ({ he, plain, ratio: Number((he / plain).toFixed(3)) });
    const text = renderSummary({
      dataset: 'spam-assassin',
      workspace: '/w',
      job: 'j',
      status: 'FINISHED',
      seconds: 30,
      rounds: [{ round: 1, accuracy: 0.9, loss: 0.3, seconds: 1.5, contributors: ['site-1', 'site-2'] }],
      sites: [
        { name: 'site-1', epsilon: null, bytes: 1000 },
        { name: 'site-3', epsilon: null, bytes: 0, refused: 'E_ATTEST_POLICY_DEBUG: the guest policy allows DEBUG' },
      ],
      audit: { verified: true, problems: [] },
      he: {
        compared_with: 'a plaintext twin',
        seconds_per_round: c(1.2, 0.8),
        bytes_per_site_per_round: c(270_000, 8_760),
        server_aggregate_seconds_per_round: c(0.05, 0.001),
        site_encrypt_ms_per_round: 20,
        site_decrypt_ms_per_round: 15,
        update_bytes: c(163_000, 4100),
        parameters: 1025,
        final_accuracy: { he: 0.95, plain: 0.95 },
        total_seconds: { he: 13, plain: 11 },
        twin_workspace: '/w/plain-twin',
      },
      attestation: { mode: 'test', policy: { version: 1 }, verified: 9, periodic: 4, refused: [{ by: 'localhost', peer: 'site-3', purpose: 'login#1', code: 'E_ATTEST_POLICY_DEBUG', reason: 'the guest policy allows DEBUG' }] },
    }).join('\n');
    expect(text).toMatch(/site-3 +- +0 {2}refused: E_ATTEST_POLICY_DEBUG/);
    expect(text).toContain('seconds per round              1.2 s vs 0.8 s (1.5x)');
    expect(text).toContain('one update upload              163000 B vs 4100 B');
    expect(text).toContain('9 checks passed (4 periodic), 1 refused');
    expect(text).toContain('localhost refused site-3 (login#1): E_ATTEST_POLICY_DEBUG: the guest policy allows DEBUG');
  });
});
