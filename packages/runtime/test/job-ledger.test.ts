// The site's job ledger and its anchor in the site's audit log (issue #14): every change is a `job_seen` event,
// and a ledger file that lacks what the log recorded (deleted, or an older copy put back) is restored from it.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JOB_LEDGER_FILE, SiteJobLedger, jobLedgerFromAudit } from '../src/site/job-ledger.js';
import { auditRecorder, tempDir } from './helpers.js';

const DAY = 24 * 3600_000;
const M = 'a'.repeat(64);
const signedAgo = (ms: number): string => new Date(Date.now() - ms).toISOString();

describe('SiteJobLedger anchored in the audit log', () => {
  it('records every change in the audit log before the file (job_seen with state, signed_at, manifest, code)', async () => {
    const ws = await tempDir();
    const audit = auditRecorder('s');
    const ledger = await SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audit: audit.hook });
    const at = signedAgo(DAY);
    await ledger.record('job-1', { state: 'running', signed_at: at, manifest: M });
    await ledger.end('job-1', 'FINISHED');
    await ledger.record('job-2', { state: 'refused', signed_at: at, manifest: M, code: 'E_POLICY_COMPONENT' });
    expect(audit.events.map((e) => [e.action, e.job, e.data?.['state'], e.data?.['code']])).toEqual([
      ['job_seen', 'job-1', 'running', undefined],
      ['job_seen', 'job-1', 'ended', 'FINISHED'],
      ['job_seen', 'job-2', 'refused', 'E_POLICY_COMPONENT'],
    ]);
    const rebuilt = await jobLedgerFromAudit(audit.events);
    expect([...rebuilt.keys()]).toEqual(['job-1', 'job-2']);
    expect(rebuilt.get('job-1')).toMatchObject({ state: 'ended', signed_at: at, manifest: M, code: 'FINISHED' });
  });

  it('restores from the log what a deleted or emptied file lacks, audited (E_RUNTIME_JOB_LEDGER_ROLLBACK naming the jobs); the file is rewritten', async () => {
    const ws = await tempDir();
    const first = auditRecorder('a');
    const ledger = await SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audit: first.hook });
    await ledger.record('job-1', { state: 'ended', signed_at: signedAgo(DAY), manifest: M, code: 'FINISHED' });
    await ledger.record('job-2', { state: 'refused', signed_at: signedAgo(DAY), manifest: M, code: 'E_POLICY_COMPONENT' });
    const audited = await jobLedgerFromAudit(first.events);

    for (const tamper of [() => rm(join(ws, JOB_LEDGER_FILE)), () => writeFile(join(ws, JOB_LEDGER_FILE), '{"v":1,"jobs":{}}')]) {
      await tamper();
      const audit = auditRecorder('b');
      const reopened = await SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audit: audit.hook, audited });
      expect(reopened.repaired).toEqual(['job-1', 'job-2']);
      expect(reopened.get('job-2')).toMatchObject({ state: 'refused', code: 'E_POLICY_COMPONENT' });
      expect(audit.events).toEqual([expect.objectContaining({ action: 'job_ledger_repaired', data: { code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', file: JOB_LEDGER_FILE, repaired: 2, jobs: ['job-1', 'job-2'] } })]);
      const file = JSON.parse(await readFile(join(ws, JOB_LEDGER_FILE), 'utf8')) as { jobs: Record<string, unknown> };
      expect(Object.keys(file.jobs)).toEqual(['job-1', 'job-2']);
    }
  });

  it('does not repair what the file holds as the log says, nor entries the age window forgets anyway; a file that is not a ledger is still refused (E_RUNTIME_WORKSPACE)', async () => {
    const ws = await tempDir();
    const log = auditRecorder('a');
    const ledger = await SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audit: log.hook });
    await ledger.record('fresh', { state: 'ended', signed_at: signedAgo(DAY), manifest: M, code: 'FINISHED' });
    // In the log but signed before the window: the window refuses that job by itself, nothing is missing.
    const audited = await jobLedgerFromAudit([...log.events, { action: 'job_seen', job: 'stale', data: { state: 'ended', signed_at: signedAgo(30 * DAY), manifest: M } }]);
    const audit = auditRecorder('b');
    const reopened = await SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audit: audit.hook, audited });
    expect(reopened.repaired).toEqual([]);
    expect(reopened.get('stale')).toBeUndefined();
    expect(audit.events).toEqual([]);

    await writeFile(join(ws, JOB_LEDGER_FILE), '{"v":1,"jobs":{"x":{"state":"ended"}}}');
    await expect(SiteJobLedger.open(ws, { maxAgeMs: 7 * DAY, audited })).rejects.toMatchObject({ code: 'E_RUNTIME_WORKSPACE' });
  });

  it("reads only well-formed job_seen events of the site's log; the last one of a job wins", async () => {
    const ok = { state: 'running', signed_at: signedAgo(DAY), manifest: M };
    const rebuilt = await jobLedgerFromAudit([
      { action: 'job_seen', job: 'j1', data: ok },
      { action: 'job_seen', job: 'j1', data: { ...ok, state: 'ended', code: 'FINISHED' } },
      { action: 'job_seen', job: '../etc', data: ok },
      { action: 'job_seen', job: 'j2', data: { ...ok, state: 'gone' } },
      { action: 'job_seen', data: ok },
      { action: 'task_received', job: 'j3', data: ok },
    ]);
    expect([...rebuilt.keys()]).toEqual(['j1']);
    expect(rebuilt.get('j1')).toMatchObject({ state: 'ended', code: 'FINISHED' });
  });
});
