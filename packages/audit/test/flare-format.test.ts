import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, exportFlareFormat, toFlareLine, type AuditRecord } from '../src/index.js';
import { scratch, siteKey } from './helpers.js';

const tmp = scratch();
afterAll(() => tmp.cleanup());
const base: AuditRecord = { v: 1, seq: 4, ts: '2026-11-23T16:49:00.123Z', site: 'server', id: 'e1', action: 'submit_job', prev: '0'.repeat(64), hash: '1'.repeat(64) };

describe('FLARE audit format', () => {
  it('writes a user event like FLARE\'s Auditor.add_event: [E][R][T][U][A]message', () => {
    expect(toFlareLine({ ...base, ref: 'r9', user: 'admin@a.org', msg: 'submit_job hello-numpy' })).toBe(
      '[E:e1][R:r9][T:2026-11-23 16:49:00.123000][U:admin@a.org][A:submit_job]submit_job hello-numpy',
    );
    // Without ref, FLARE leaves [R:] out; without a user it writes [U:].
    expect(toFlareLine(base)).toBe('[E:e1][T:2026-11-23 16:49:00.123000][U:][A:submit_job]');
  });

  it('writes a job event like FLARE\'s Auditor.add_job_event: [E][R][T][S][J][A]message', () => {
    expect(toFlareLine({ ...base, action: 'train#t-17', job: 'j1', scope: 'private', ref: 'srv-1', msg: 'received task' })).toBe(
      '[E:e1][R:srv-1][T:2026-11-23 16:49:00.123000][S:private][J:j1][A:train#t-17]received task',
    );
  });

  it('keeps one event per line and lets no value forge a field', () => {
    const line = toFlareLine({ ...base, user: 'x][A:shutdown', msg: 'two\nlines\r' });
    expect(line).toBe('[E:e1][T:2026-11-23 16:49:00.123000][U:x\\]\\[A:shutdown][A:submit_job]two\\u000alines\\u000d');
    expect(line).not.toContain('\n');
  });

  it('exports a log\'s events in order, leaving checkpoints out', async () => {
    const path = join(tmp.dir, 'server.jsonl');
    const log = await AuditLog.open(path, { site: 'server', signer: siteKey(tmp.dir, 'server').pem, checkpointEvery: 2 });
    log.append({ action: 'submit_job', user: 'admin@a.org', msg: 'job1' });
    log.append({ action: 'abort_job', user: 'admin@a.org', job: 'j1' });
    await log.close();
    const lines: string[] = [];
    for await (const l of exportFlareFormat(path)) lines.push(l);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^\[E:[0-9a-f-]{36}\]\[T:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\]\[U:\]\[A:audit_open\]audit log created$/);
    expect(lines[1]).toMatch(/\[U:admin@a\.org\]\[A:submit_job\]job1$/);
    expect(lines[2]).toMatch(/\[U:admin@a\.org\]\[J:j1\]\[A:abort_job\]$/);
  });
});
