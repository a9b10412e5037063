// The anchor exchange (issue #14.13): each site sends its latest signed audit checkpoint to the server at login
// (and periodically), the server records it and answers with its own, which the site records. A log that goes
// back on an anchor recorded before is refused by the recording side.
import { AuditError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { AnchorLog } from '../src/protocol/anchors.js';
import { closeAll, startServer, startSite, tempDir, until } from './helpers.js';

afterEach(closeAll);

/** A log that hands out anchors with rising seq numbers and records its peers' (refusing one that goes back). */
function anchorLog(site: string, start = 1): AnchorLog & { recorded: Array<{ peer: string; seq: number }>; seq: number } {
  const last = new Map<string, number>();
  const log = {
    recorded: [] as Array<{ peer: string; seq: number }>,
    seq: start,
    anchor: () => ({ site, seq: log.seq++ }),
    recordAnchor: (value: unknown, options: { readonly site?: string }): string => {
      const a = value as { site: string; seq: number };
      if (a.site !== options.site) throw new AuditError('E_AUDIT_ANCHOR', `it belongs to ${a.site}, not ${options.site}`);
      if ((last.get(a.site) ?? -1) > a.seq) throw new AuditError('E_AUDIT_ROLLBACK', `the audit log of ${a.site} was rolled back`);
      last.set(a.site, a.seq);
      log.recorded.push({ peer: a.site, seq: a.seq });
      return `anchor-${log.recorded.length}`;
    },
  };
  return log;
}

describe('audit anchors between server and sites (issue #14.13)', () => {
  it("a site sends its anchor at login and periodically; the server records it and the site records the server's", async () => {
    const serverLog = anchorLog('server');
    const siteLog = anchorLog('site-1');
    const { hub } = await startServer(await tempDir(), { anchors: serverLog });
    const site = await startSite(1, hub, { anchors: siteLog, anchorIntervalMs: 100 });
    await site.engine.registered(10_000);
    await until(() => (serverLog.recorded.length >= 3 ? true : undefined));
    expect(serverLog.recorded.slice(0, 3)).toEqual([{ peer: 'site-1', seq: 1 }, { peer: 'site-1', seq: 2 }, { peer: 'site-1', seq: 3 }]);
    await until(() => (siteLog.recorded.length >= 3 ? true : undefined));
    expect(siteLog.recorded[0]).toEqual({ peer: 'server', seq: 1 });
  });

  it('a site whose log went back on an anchor the server recorded is refused there; an anchor of another participant is refused and audited (anchor_refused)', async () => {
    const serverLog = anchorLog('server');
    const { hub, audit } = await startServer(await tempDir(), { anchors: serverLog });
    const first = await startSite(1, hub, { anchors: anchorLog('site-1', 10) });
    await first.engine.registered(10_000);
    await until(() => (serverLog.recorded.length >= 1 ? true : undefined));
    await first.engine.close();
    // The same site back with an older copy of its log.
    const rolled = await startSite(1, hub, { anchors: anchorLog('site-1', 3) });
    await rolled.engine.registered(10_000);
    const impostor = await startSite(2, hub, { anchors: anchorLog('site-1', 50) });
    await impostor.engine.registered(10_000);
    const refused = await until(() => audit.events.find((e) => e.action === 'anchor_refused'));
    expect(refused).toMatchObject({ user: 'site-2', data: { code: 'E_AUDIT_ANCHOR' } });
    expect(serverLog.recorded.filter((r) => r.peer === 'site-1').map((r) => r.seq)).toEqual([10]);
  });
});
