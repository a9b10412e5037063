import { expectFlareCodeAsync } from '@flare/core/testing';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, formatTrace, traceAuditEvent } from '../src/index.js';
import { linesOf, scratch, siteKey, writeLines } from './helpers.js';

// A round across three sites, correlated as FLARE does: the server puts its event id into the task; each
// client logs receipt with ref = that id, each filter it applies, and the result it sends; the server logs
// the result's arrival with ref = the client's result event.
const tmp = scratch();
const paths = { server: join(tmp.dir, 'server.jsonl'), site1: join(tmp.dir, 'site-1.jsonl'), site2: join(tmp.dir, 'site-2.jsonl') };
const ids: Record<string, string> = {};
beforeAll(async () => {
  const open = (site: string, path: string) => AuditLog.open(path, { site, signer: siteKey(tmp.dir, site).pem });
  const server = await open('server', paths.server);
  const s1 = await open('site-1', paths.site1);
  const s2 = await open('site-2', paths.site2);
  ids['task'] = server.append({ action: 'task_sent', job: 'j1', msg: 'train round 0' });
  for (const [name, log] of [['site-1', s1], ['site-2', s2]] as const) {
    const received = log.append({ action: 'task_received', ref: ids['task'], job: 'j1', scope: 'private' });
    const filtered = log.append({ action: 'filter_applied', ref: received, job: 'j1', data: { filter: 'gaussian-dp' } });
    const result = log.append({ action: 'result_sent', ref: received, job: 'j1' });
    ids[`${name}-received`] = received;
    ids[`${name}-filtered`] = filtered;
    ids[`${name}-result`] = result;
    ids[`${name}-accepted`] = server.append({ action: 'result_received', ref: result, job: 'j1', user: name });
  }
  ids['unrelated'] = server.append({ action: 'list_jobs', user: 'alice@a.org' });
  for (const l of [server, s1, s2]) await l.close();
});
afterAll(() => tmp.cleanup());

describe('traceAuditEvent', () => {
  it('follows ref links up to the task and down to every site\'s receipt, filters, result and the server\'s acceptance', async () => {
    const t = await traceAuditEvent(ids['site-2-filtered']!, [paths.server, paths.site1, paths.site2]);
    expect(t.target.record.id).toBe(ids['site-2-filtered']);
    expect(t.root.event.record).toMatchObject({ id: ids['task'], site: 'server', action: 'task_sent' });
    const flat = (n: typeof t.root, depth = 0): string[] => [`${depth}:${n.event.record.site}:${n.event.record.action}`, ...n.children.flatMap((c) => flat(c, depth + 1))];
    expect(flat(t.root).sort()).toEqual(
      [
        '0:server:task_sent',
        '1:site-1:task_received', '2:site-1:filter_applied', '2:site-1:result_sent', '3:server:result_received',
        '1:site-2:task_received', '2:site-2:filter_applied', '2:site-2:result_sent', '3:server:result_received',
      ].sort(),
    );
    expect(t.files.every((f) => f.ok)).toBe(true);
    expect(t.missingRef).toBeUndefined();
    const text = formatTrace(t);
    expect(text).toHaveLength(9);
    expect(text.filter((l) => l.startsWith('*'))).toHaveLength(1);
    expect(text.find((l) => l.startsWith('*'))).toContain(`filter_applied job=j1 [${ids['site-2-filtered']}]`);
    expect(text.join('\n')).not.toContain('list_jobs');
  });

  it('traces with only some of the logs, saying where the chain leaves them', async () => {
    const t = await traceAuditEvent(ids['site-1-result']!, [paths.site1]);
    expect(t.root.event.record.action).toBe('task_received');
    expect(t.missingRef).toBe(ids['task']);
    expect(formatTrace(t)[0]).toContain(`starts from event ${ids['task']}`);
  });

  it('reports logs that do not verify, and skips their damaged lines', async () => {
    const damaged = join(tmp.dir, 'site-1-damaged.jsonl');
    const lines = linesOf(paths.site1);
    lines[2] = lines[2]!.replace('gaussian-dp', 'no-dp-at-all');
    writeLines(damaged, lines);
    const t = await traceAuditEvent(ids['task']!, [paths.server, damaged]);
    expect(t.files).toEqual([{ path: paths.server, ok: true }, { path: damaged, ok: false, firstProblem: 'line 3: modified' }]);
    expect(JSON.stringify(t.root)).not.toContain('no-dp-at-all');
  });

  it('refuses an event id no log holds (E_AUDIT_TRACE)', async () => {
    await expectFlareCodeAsync(() => traceAuditEvent('00000000-0000-4000-8000-000000000000', [paths.server]), 'E_AUDIT_TRACE');
  });
});
