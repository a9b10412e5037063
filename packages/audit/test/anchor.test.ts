import { expectFlareCode } from '@flare/core/testing';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, compareAnchors, readAnchors, verifyAnchor, verifyAuditLog, type AuditAnchor } from '../src/index.js';
import { scratch, siteKey, type SiteKey } from './helpers.js';

// The exchange the runtime does: the site's log hands its anchor to the server, whose log records it (and the
// other way round); later a copy of the site's log is verified against the server's log.
const tmp = scratch('flare-audit-anchor-');
let site: SiteKey, server: SiteKey, other: SiteKey;
beforeAll(() => {
  site = siteKey(tmp.dir, 'site-1');
  server = siteKey(tmp.dir, 'server');
  other = siteKey(tmp.dir, 'site-2');
});
afterAll(() => tmp.cleanup());

let n = 0;
const fresh = (name: string) => join(tmp.dir, `${name}-${n++}.jsonl`);
const events = (log: AuditLog, count: number, tag: string) => {
  for (let i = 0; i < count; i++) log.append({ action: 'task_done', job: 'j1', msg: `${tag} ${i}` });
};

describe('AuditLog.anchor and recordAnchor', () => {
  it('a site anchors its log at the server; the server records it; the anchor verifies on its own', async () => {
    const siteLog = await AuditLog.open(fresh('site'), { site: 'site-1', signer: site.pem });
    const serverLog = await AuditLog.open(fresh('server'), { site: 'server', signer: server.pem });
    events(siteLog, 3, 'a');
    const a1 = siteLog.anchor();
    expect(a1).toMatchObject({ action: 'audit_checkpoint', site: 'site-1', seq: 4, cp: { final: false } });
    expect(siteLog.anchor()).toEqual(a1); // nothing new: the same checkpoint
    const id = serverLog.recordAnchor(JSON.parse(JSON.stringify(a1)), { certificate: site.cert, site: 'site-1' });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    events(siteLog, 2, 'b');
    const a2 = siteLog.anchor();
    expect(compareAnchors(a1, a2)).toBe('advanced');
    serverLog.recordAnchor(a2, { certificate: site.cert, site: 'site-1' });
    await siteLog.close();
    await serverLog.close();
    expect((await verifyAuditLog(serverLog.path)).ok).toBe(true);
    const { anchors, invalid } = await readAnchors([serverLog.path]);
    expect(invalid).toEqual([]);
    // The server's own checkpoints are anchors of the server's log; the recorded ones are site-1's.
    expect(anchors.filter((a) => a.site === 'site-1').map((a) => a.seq)).toEqual([4, 7]);
    expect(verifyAnchor(a2, { certificate: site.cert, site: 'site-1' }).hash).toBe(a2.hash);
  });

  it('refuses an anchor that does not verify (E_AUDIT_ANCHOR): forged, altered, another site\'s key, another name', async () => {
    const siteLog = await AuditLog.open(fresh('site'), { site: 'site-1', signer: site.pem });
    const serverLog = await AuditLog.open(fresh('server'), { site: 'server', signer: server.pem });
    const a = siteLog.anchor();
    expectFlareCode(() => serverLog.recordAnchor({ ...a, seq: a.seq + 10 }), 'E_AUDIT_ANCHOR');
    expectFlareCode(() => serverLog.recordAnchor({ ...a, sig: Buffer.alloc(64).toString('base64') }), 'E_AUDIT_ANCHOR');
    expectFlareCode(() => serverLog.recordAnchor({ ...a, extra: 1 }), 'E_AUDIT_ANCHOR');
    expectFlareCode(() => serverLog.recordAnchor(a, { certificate: other.cert }), 'E_AUDIT_ANCHOR');
    expectFlareCode(() => serverLog.recordAnchor(a, { site: 'site-2' }), 'E_AUDIT_ANCHOR');
    expectFlareCode(() => serverLog.recordAnchor('not an anchor'), 'E_AUDIT_ANCHOR');
    await siteLog.close();
    await serverLog.close();
  });

  it('notices a peer that rolled back: an older anchor, or another checkpoint at a recorded seq (E_AUDIT_ROLLBACK), and audits it', async () => {
    const path = fresh('site');
    let siteLog = await AuditLog.open(path, { site: 'site-1', signer: site.pem });
    const serverLog = await AuditLog.open(fresh('server'), { site: 'server', signer: server.pem });
    events(siteLog, 2, 'a');
    await siteLog.close();
    const backup = `${path}.bak`;
    copyFileSync(path, backup);
    siteLog = await AuditLog.open(path, { site: 'site-1', signer: site.pem });
    events(siteLog, 5, 'b');
    serverLog.recordAnchor(siteLog.anchor());
    await siteLog.close();
    // The site's operator restores the older copy; the writer resumes on it and anchors again.
    copyFileSync(backup, path);
    siteLog = await AuditLog.open(path, { site: 'site-1', signer: site.pem });
    const older = siteLog.anchor();
    expect(expectFlareCode(() => serverLog.recordAnchor(older), 'E_AUDIT_ROLLBACK').message).toMatch(/"site-1" was rolled back/);
    events(siteLog, 10, 'c');
    const forked = siteLog.anchor();
    // Past the recorded seq again, but the recorded checkpoint is no longer in this history: compare the logs.
    expect(serverLog.recordAnchor(forked)).toMatch(/-/);
    await siteLog.close();
    await serverLog.close();
    const lines = readFileSync(serverLog.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; data?: { order?: string } });
    expect(lines.find((l) => l.action === 'audit_anchor_rollback')?.data?.order).toBe('rolled_back');
  });

  it('remembers recorded anchors across a restart when given them at open (readAnchors of its own log)', async () => {
    const siteLog = await AuditLog.open(fresh('site'), { site: 'site-1', signer: site.pem });
    const serverPath = fresh('server');
    let serverLog = await AuditLog.open(serverPath, { site: 'server', signer: server.pem });
    events(siteLog, 1, 'a');
    const early = siteLog.anchor();
    events(siteLog, 3, 'b');
    serverLog.recordAnchor(siteLog.anchor());
    await serverLog.close();
    serverLog = await AuditLog.open(serverPath, { site: 'server', signer: server.pem, anchors: (await readAnchors([serverPath])).anchors });
    expectFlareCode(() => serverLog.recordAnchor(early), 'E_AUDIT_ROLLBACK');
    await serverLog.close();
    await siteLog.close();
    // A seed that does not verify is refused at open rather than trusted.
    await expect(AuditLog.open(fresh('server'), { site: 'server', signer: server.pem, anchors: [{ ...early, seq: 99 } as AuditAnchor] })).rejects.toMatchObject({ code: 'E_AUDIT_ANCHOR' });
  });
});

describe('verifyAuditLog with anchors', () => {
  // One history of site-1's log, its anchors recorded by the server, and copies an attacker could present.
  const history = async () => {
    const path = fresh('site');
    const serverLog = await AuditLog.open(fresh('server'), { site: 'server', signer: server.pem });
    let log = await AuditLog.open(path, { site: 'site-1', signer: site.pem, checkpointEvery: 4 });
    events(log, 6, 'a');
    await log.close();
    const early = `${path}.early`;
    copyFileSync(path, early); // an older copy that ends in a valid, final, signed checkpoint
    log = await AuditLog.open(path, { site: 'site-1', signer: site.pem, checkpointEvery: 4 });
    events(log, 5, 'b');
    serverLog.recordAnchor(log.anchor(), { certificate: site.cert });
    events(log, 2, 'c');
    await log.close();
    await serverLog.close();
    return { path, early, serverLog: serverLog.path };
  };

  it('a whole log matches every anchor its peer recorded', async () => {
    const { path, serverLog } = await history();
    const { anchors } = await readAnchors([serverLog]);
    const r = await verifyAuditLog(path, { certificate: site.cert, anchors });
    expect(r).toMatchObject({ ok: true, closed: true, anchors: { checked: 1, matched: 1, invalid: 0 } });
    expect(r.anchors!.otherSites).toBeGreaterThan(0); // the server's own checkpoints
  });

  it('detects an older copy of the log that ends in a valid signed checkpoint (rolled_back)', async () => {
    const { early, serverLog } = await history();
    const alone = await verifyAuditLog(early, { certificate: site.cert });
    expect(alone).toMatchObject({ ok: true, closed: true }); // what verification without anchors cannot see
    const r = await verifyAuditLog(early, { certificate: site.cert, anchors: (await readAnchors([serverLog])).anchors });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: 'rolled_back' });
    expect(r.problems[0]!.detail).toMatch(/older copy of the log, or cut after a valid checkpoint/);
  });

  it('detects a log truncated after a valid (non-final) checkpoint (rolled_back)', async () => {
    const { path, serverLog } = await history();
    const lines = readFileSync(path, 'utf8').split('\n');
    const cut = lines.findIndex((l, i) => i > 8 && l.includes('"audit_checkpoint"'));
    const truncated = `${path}.cut`;
    writeFileSync(truncated, `${lines.slice(0, cut + 1).join('\n')}\n`);
    const r = await verifyAuditLog(truncated, { certificate: site.cert, anchors: (await readAnchors([serverLog])).anchors });
    expect(r.problems.map((p) => p.kind)).toEqual(['rolled_back']);
  });

  it('detects a rollback after which the writer resumed, even when the log ends in a valid final checkpoint (forked)', async () => {
    const { path, early, serverLog } = await history();
    copyFileSync(early, path);
    const log = await AuditLog.open(path, { site: 'site-1', signer: site.pem, checkpointEvery: 4 });
    events(log, 12, 'rewritten');
    await log.close();
    expect(await verifyAuditLog(path, { certificate: site.cert })).toMatchObject({ ok: true, closed: true });
    const r = await verifyAuditLog(path, { certificate: site.cert, anchors: (await readAnchors([serverLog])).anchors });
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.kind).toBe('forked');
  });

  it('detects a log rewritten under another key (forked), and ignores forged anchors and other sites\' anchors', async () => {
    const { path, serverLog } = await history();
    const { anchors } = await readAnchors([serverLog]);
    const fake = fresh('fake');
    const log = await AuditLog.open(fake, { site: 'site-1', signer: other.pem });
    events(log, 20, 'fake');
    await log.close();
    const r = await verifyAuditLog(fake, { anchors });
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.kind).toBe('forked');
    const mine = anchors.find((a) => a.site === 'site-1')!;
    const ok = await verifyAuditLog(path, { certificate: site.cert, anchors: [{ ...mine, seq: 1000 }, ...anchors] });
    expect(ok).toMatchObject({ ok: true, anchors: { invalid: 1, matched: 1 } });
  });

  it('readAnchors reports anchor events whose hash was altered, and never uses them', async () => {
    const { serverLog } = await history();
    const text = readFileSync(serverLog, 'utf8').replace(/"peer":"site-1"/, '"peer":"site-9"');
    const altered = fresh('altered');
    writeFileSync(altered, text);
    const r = await readAnchors([altered]);
    expect(r.invalid).toHaveLength(1);
    expect(r.anchors.some((a) => a.site === 'site-1')).toBe(false);
  });
});
