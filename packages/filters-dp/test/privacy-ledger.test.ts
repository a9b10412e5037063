import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { canonicalJson, model, tensor, type AuditEventInput, type FilterContext } from '@flare/core';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { BUDGET_ORDERS, dpSgdAccountant, gaussianDp, LEDGER_HEAD_ACTION, ledgerHeadsFromAudit, openPrivacyLedger, privacySpent, type LedgerHead, type PrivacyLedger } from '../src/index.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'flare-ledger-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The site's audit log as the ledger sees it: a hook that keeps events (the real one is @flare/audit's append). */
const auditLog = () => {
  const events: AuditEventInput[] = [];
  return { events, append: (e: AuditEventInput) => (events.push(e), `id-${events.length}`) };
};
const update = (values = [0.3, -0.4]) => model({ w: tensor(Float32Array.from(values)) }, 'diff');
const ctx = (job: string, audit?: (e: AuditEventInput) => string): FilterContext => ({ site: 'site-1', job, round: 0, ...(audit ? { audit } : {}) });
const dpSgdUpdate = () => ({ ...update(), meta: { dp_sgd: { noise_multiplier: 1, sampling_rate: 0.02, steps: 500, clip_norm: 1, examples: 5000 } } });
const ledgerFile = (dir: string) => join(dir, readdirSync(dir).find((n) => n.startsWith('ledger-'))!);
describe('one privacy ledger per dataset, across jobs', () => {
  it('two concurrent jobs on the same data share one budget: the second job is refused once the data is spent (E_DP_BUDGET_EXHAUSTED)', async () => {
    const log = auditLog();
    const ledger = openPrivacyLedger(tmp(), { site: 'site-1', audit: log.append });
    // One release at z = 1.1 costs ε ≈ 3.7 at δ = 1e-5; the budget allows two, not three.
    const budget = { maxEpsilon: 8, delta: 1e-5, ledger };
    const jobA = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget });
    const jobB = gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget });
    const [a, b] = await Promise.all([jobA.apply(update(), ctx('job-a')), jobB.apply(update(), ctx('job-b'))]);
    expect((a.meta['dp_privacy_spent'] as { releases: number }).releases + (b.meta['dp_privacy_spent'] as { releases: number }).releases).toBe(3);
    await expectFlareCodeAsync(() => jobA.apply(update(), ctx('job-a')), 'E_DP_BUDGET_EXHAUSTED');
    await expectFlareCodeAsync(() => jobB.apply(update(), ctx('job-b')), 'E_DP_BUDGET_EXHAUSTED');
    const { totals } = await ledger.read('default', 'job-a');
    expect(totals?.releases).toBe(2);
    expect(privacySpent(totals, { delta: 1e-5, maxEpsilon: 8 }).epsilon).toBeLessThanOrEqual(8);
    // Every appended line reported its head to the audit log, in order.
    const heads = log.events.filter((e) => e.action === LEDGER_HEAD_ACTION).map((e) => e.data?.['seq']);
    expect(heads).toEqual([0, 1, 2, 3]);
  });

  it('record-level (dp-sgd) and site-level (gaussian-dp) releases of two jobs compose into the same dataset ledger', async () => {
    const ledger = openPrivacyLedger(tmp(), { site: 'site-1' });
    await dpSgdAccountant({ budget: { maxEpsilon: 50, delta: 1e-5, ledger } }).apply(dpSgdUpdate(), ctx('job-a'));
    await gaussianDp({ clipNorm: 1, noiseMultiplier: 2, budget: { maxEpsilon: 50, delta: 1e-5, ledger } }).apply(update(), ctx('job-b'));
    const view = await ledger.read('default', 'job-b');
    expect(view.totals?.releases).toBe(2);
    expect(view.job.releases).toBe(1);
  });

  it('different datasets keep different ledgers (a site names them in its scopes)', async () => {
    const ledger = openPrivacyLedger(tmp(), { site: 'site-1' });
    const f = (dataset: string) => gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 5, delta: 1e-5, ledger, dataset } });
    await f('spam').apply(update(), ctx('j'));
    await f('iris').apply(update(), ctx('j'));
    expect((await ledger.read('spam', 'j')).totals?.releases).toBe(1);
    expect((await ledger.read('iris', 'j')).totals?.releases).toBe(1);
    expect(ledger.heads().map((h) => h.dataset).sort()).toEqual(['iris', 'spam']);
    await expect(ledger.read('../etc', 'j')).rejects.toThrow(TypeError);
  });

  it('the spending survives a restart (a new process: the ledger is read back and verified)', async () => {
    const dir = tmp();
    const first = openPrivacyLedger(dir, { site: 'site-1' });
    await gaussianDp({ clipNorm: 1, noiseMultiplier: 1.1, budget: { maxEpsilon: 8, delta: 1e-5, ledger: first } }).apply(update(), ctx('j'));
    const text = readFileSync(ledgerFile(dir), 'utf8');
    expect(statSync(ledgerFile(dir)).mode & 0o777).toBe(0o600);
    const restarted = await freshProcessView(dir, text);
    expect(restarted.totals?.releases).toBe(1);
  });
});

/** What a new process sees: the same bytes in a new folder (one ledger object per folder per process). */
async function freshProcessView(dir: string, text: string, heads: readonly LedgerHead[] = []) {
  const copy = tmp();
  writeFileSync(join(copy, ledgerFile(dir).split('/').at(-1)!), text);
  return openPrivacyLedger(copy, { site: 'site-1', trustedHeads: heads }).read('default', 'j');
}

describe('rollback and deletion of the ledger are detected (E_DP_LEDGER_ROLLBACK)', () => {
  /** Three releases, the heads as the site's audit log recorded them, and the ledger's text after one release. */
  async function history() {
    const dir = tmp();
    const log = auditLog();
    const ledger = openPrivacyLedger(dir, { site: 'site-1', audit: log.append });
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 3, budget: { maxEpsilon: 20, delta: 1e-5, ledger } });
    await f.apply(update(), ctx('j'));
    const afterOne = readFileSync(ledgerFile(dir), 'utf8');
    await f.apply(update(), ctx('j'));
    await f.apply(update(), ctx('j'));
    const heads = await ledgerHeadsFromAudit(log.events);
    return { dir, ledger, f, afterOne, heads, full: readFileSync(ledgerFile(dir), 'utf8') };
  }

  it('the heads the audit log recorded verify the whole ledger after a restart', async () => {
    const { dir, heads, full } = await history();
    expect(heads).toEqual([{ dataset: 'default', seq: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) as string }]);
    expect((await freshProcessView(dir, full, heads)).totals?.releases).toBe(3);
  });

  it('a deleted ledger is refused at restart, not started from zero, and the refusal is audited', async () => {
    const { heads } = await history();
    const empty = tmp();
    await expectFlareCodeAsync(openPrivacyLedger(empty, { site: 'site-1', trustedHeads: heads }).read('default', 'j'), 'E_DP_LEDGER_ROLLBACK');
    const log = auditLog();
    const watched = openPrivacyLedger(tmp(), { site: 'site-1', trustedHeads: heads, audit: log.append });
    await expectFlareCodeAsync(() => gaussianDp({ clipNorm: 1, noiseMultiplier: 3, budget: { maxEpsilon: 20, delta: 1e-5, ledger: watched } }).apply(update(), ctx('j')), 'E_DP_LEDGER_ROLLBACK');
    expect(log.events.map((e) => e.action)).toEqual(['dp_ledger_rollback']);
    const f = gaussianDp({ clipNorm: 1, noiseMultiplier: 3, budget: { maxEpsilon: 20, delta: 1e-5, ledger: openPrivacyLedger(empty, { site: 'site-1' }) } });
    await expectFlareCodeAsync(() => f.apply(update(), ctx('j')), 'E_DP_LEDGER_ROLLBACK');
  });

  it('an older copy of the ledger (rolled back) is refused at restart', async () => {
    const { dir, heads, afterOne } = await history();
    await expectFlareCodeAsync(freshProcessView(dir, afterOne, heads), 'E_DP_LEDGER_ROLLBACK');
  });

  it('a rolled-back ledger written again past the head (another history) is refused at restart', async () => {
    const { dir, heads, afterOne } = await history();
    // Roll back, then spend again from the older state: the chain reaches seq 2 with other hashes.
    const forkDir = tmp();
    writeFileSync(join(forkDir, ledgerFile(dir).split('/').at(-1)!), afterOne);
    const fork = openPrivacyLedger(forkDir, { site: 'site-1' });
    const g = gaussianDp({ clipNorm: 1, noiseMultiplier: 3, budget: { maxEpsilon: 20, delta: 1e-5, ledger: fork } });
    await g.apply(update(), ctx('j'));
    await g.apply(update(), ctx('j'));
    await expectFlareCodeAsync(freshProcessView(forkDir, readFileSync(ledgerFile(forkDir), 'utf8'), heads), 'E_DP_LEDGER_ROLLBACK');
  });

  it('deleting or rolling back the ledger while the site runs is refused at the next release', async () => {
    const { dir, f, afterOne } = await history();
    const file = ledgerFile(dir);
    copyFileSync(file, `${file}.bak`);
    writeFileSync(file, afterOne);
    await expectFlareCodeAsync(() => f.apply(update(), ctx('j')), 'E_DP_LEDGER_ROLLBACK');
    unlinkSync(file);
    await expectFlareCodeAsync(() => f.apply(update(), ctx('j')), 'E_DP_LEDGER_ROLLBACK');
    copyFileSync(`${file}.bak`, file); // restored: spending continues
    await f.apply(update(), ctx('j'));
  });

  it('an edited line (lower spending with its hash recomputed, or not) is refused (E_DP_BUDGET_CORRUPT)', async () => {
    const { dir, full } = await history();
    const lines = full.trim().split('\n');
    const edited = lines.map((l, i) => (i === 2 ? l.replace(/"releases":3/, '"releases":2') : l)).join('\n') + '\n';
    await expectFlareCodeAsync(freshProcessView(dir, edited), 'E_DP_BUDGET_CORRUPT');
    // A forger who recomputes hashes still cannot lower the totals along the chain.
    let prev = '0'.repeat(64);
    const forged = lines.map((l, i) => {
      const v = JSON.parse(l) as Record<string, unknown> & { totals: { rdp: number[] } };
      if (i === 2) v.totals.rdp = v.totals.rdp.map(() => 0);
      v['prev'] = prev;
      delete v['hash'];
      v['hash'] = createHash('sha256').update(canonicalJson(v as never)).digest('hex');
      prev = v['hash'] as string;
      return JSON.stringify(v);
    });
    await expectFlareCodeAsync(freshProcessView(dir, `${forged.join('\n')}\n`), 'E_DP_BUDGET_CORRUPT');
  });

  it('a torn last line (a crash mid-write, never released) is ignored', async () => {
    const { dir, full, heads } = await history();
    expect((await freshProcessView(dir, `${full}{"v":1,"seq":3,"si`, heads)).totals?.releases).toBe(3);
  });
});

describe('ledgerHeadsFromAudit', () => {
  it('keeps the latest head per dataset and skips other and malformed events', async () => {
    const h = (dataset: string, seq: number) => ({ action: LEDGER_HEAD_ACTION, data: { dataset, seq, head: String(seq).padStart(64, '0') } });
    async function* events() {
      yield h('default', 0);
      yield { action: 'task_done' };
      yield h('default', 4);
      yield h('spam', 1);
      yield { action: LEDGER_HEAD_ACTION, data: { dataset: 'default', seq: 'x' } };
      yield h('default', 2);
    }
    expect(await ledgerHeadsFromAudit(events())).toEqual([
      { dataset: 'default', seq: 4, hash: '4'.padStart(64, '0') },
      { dataset: 'spam', seq: 1, hash: '1'.padStart(64, '0') },
    ]);
  });
});

describe('openPrivacyLedger', () => {
  it('returns one object per folder (two would see each other as tampering) and refuses another site on it', () => {
    const dir = tmp();
    const a: PrivacyLedger = openPrivacyLedger(dir, { site: 'site-1' });
    expect(openPrivacyLedger(join(dir, '.'), { site: 'site-1' })).toBe(a);
    expect(() => openPrivacyLedger(dir, { site: 'site-2' })).toThrow(TypeError);
  });

  it('folds the per-job budget files of an earlier version into the default ledger: an upgrade forgets nothing', async () => {
    const dir = tmp();
    const old = (job: string, releases: number) => ({
      version: 1, site: 'site-1', job, orders: BUDGET_ORDERS, rdp: BUDGET_ORDERS.map((a) => a * 0.05 * releases), pureEpsilon: null,
      samplerEpsilon: 0, samplerTv: 0, releases, exhausted: job === 'b', updatedAt: new Date(0).toISOString(),
    });
    writeFileSync(join(dir, `${'a'.repeat(64)}.json`), JSON.stringify(old('a', 2)));
    writeFileSync(join(dir, `${'b'.repeat(64)}.json`), JSON.stringify(old('b', 3)));
    const ledger = openPrivacyLedger(dir, { site: 'site-1' });
    const view = await ledger.read('default', 'b');
    expect(view.totals?.releases).toBe(5);
    expect(view.job).toEqual({ releases: 3, exhausted: true });
    expect(view.totals?.rdp[0]).toBeCloseTo(BUDGET_ORDERS[0]! * 0.05 * 5, 12);
  });
});
