// A job offered to many sites that share one process (a simulator, the scale bench's workers; issue #18): the
// server's deployer sends it a batch per turn of the event loop and still reaches every site; the sites admit it
// a batch per turn; the admin's signature is checked once per distinct job in the process, never skipped for a
// job whose signature this process did not verify.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeJobBundle, type JobBundle } from '../src/protocol/bundle.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { coalesce, someOf } from '../src/relay/aggregate.js';
import { signJobBundle } from '../src/protocol/job-trust.js';
import { outgoing, parseMessage, type MessageOf } from '../src/protocol/messages.js';
import { VERIFIED_JOB_SIGNATURES } from '../src/site/admission.js';
import { memoryHub } from '../src/testing/channels.js';
import { ADMIN, adminKit, bundle, closeAll, federation, jobDefinition, startSite } from './helpers.js';

afterEach(closeAll);

/** More sites than two of the pacers' batches (32 per turn). */
const SITES = 70;

/** Counts turns of the event loop while it runs: what happened in one turn shows as one value. */
function turnCounter(): { readonly now: () => number; readonly stop: () => void } {
  let turns = 0;
  let on = true;
  const tick = (): void => {
    turns++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  return { now: () => turns, stop: () => void (on = false) };
}

/** How many of `values` are equal to each value (events in one turn of the event loop). */
function countBy(values: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

describe('a deploy to many sites in one process (issue #18)', () => {
  it(`the server's paced fan-out reaches all ${SITES} sites of one process; the job's signature is checked once there`, async () => {
    const fed = await federation(Array.from({ length: SITES }, () => ({})));
    const checks = VERIFIED_JOB_SIGNATURES.checks;
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, min_clients: SITES, deploy: ['@ALL'] })));
    const rec = await fed.server.waitForJob(id, 120_000);
    expect(rec.status, JSON.stringify([rec.error, rec.refused])).toBe('FINISHED');
    expect([...rec.sites].sort()).toEqual([...fed.sites.keys()].sort());
    // One signature check for the whole process, whatever the number of sites.
    expect(VERIFIED_JOB_SIGNATURES.checks - checks).toBe(1);
    for (const s of fed.sites.values()) expect(s.audit.events.filter((e) => e.action === 'job_admitted' && e.job === id)).toHaveLength(1);
  });
});

/** A server that deploys what the test gives it to sites 1..n over memory channels. */
async function rawServer(n: number) {
  const hub = memoryHub({ name: 'server', org: 'nvidia', type: 'server' });
  const channels = new Map<string, PeerChannel>();
  const replies = new Map<string, (m: MessageOf<'deploy_reply'>) => void>();
  hub.onChannel((ch) => {
    ch.onMessage((h) => {
      const m = parseMessage(h);
      if (m.t === 'register') {
        channels.set(ch.peer.name, ch);
        void ch.send(outgoing({ t: 'welcome' }));
      }
      if (m.t === 'deploy_reply') replies.get(m.id)?.(m);
    });
  });
  const sites = [];
  for (let i = 1; i <= n; i++) sites.push(await startSite(i, hub));
  await Promise.all(sites.map((s) => s.engine.registered(30_000)));
  const deploy = (site: string, job: string, b: JobBundle): Promise<MessageOf<'deploy_reply'>> => {
    const msgId = randomUUID();
    const answer = new Promise<MessageOf<'deploy_reply'>>((resolve) => replies.set(msgId, resolve));
    void channels.get(site)!.send(outgoing({ t: 'deploy', id: msgId, job, submitter: { name: ADMIN.name, org: ADMIN.org, role: 'project_admin' } }), encodeJobBundle(b));
    return answer;
  };
  return { sites, deploy };
}

describe('the admission cache of job signatures (one check per distinct job per process)', () => {
  it(`${SITES} sites offered one job at once admit it at most 32 per turn of the event loop, with one signature check`, async () => {
    const s = await rawServer(SITES);
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), bundle(jobDefinition({ rounds: 1, deploy: ['@ALL'] })), id);
    const turns = turnCounter();
    const checks = VERIFIED_JOB_SIGNATURES.checks;
    const turnOf = new Map<string, number>();
    for (const [i, site] of s.sites.entries()) {
      const events = site.audit.events;
      const push = events.push.bind(events);
      events.push = (...e) => {
        if (e.some((x) => x.action === 'job_admitted')) turnOf.set(`site-${i + 1}`, turns.now());
        return push(...e);
      };
    }
    const replies = await Promise.all(s.sites.map((_, i) => s.deploy(`site-${i + 1}`, id, signed)));
    turns.stop();
    expect(replies.every((r) => r.ok)).toBe(true);
    expect(turnOf.size).toBe(SITES);
    expect(Math.max(...countBy([...turnOf.values()]).values())).toBeLessThanOrEqual(32);
    expect(VERIFIED_JOB_SIGNATURES.checks - checks).toBe(1);
  });

  it('a different job under the same id is verified again; a changed signature of a verified job is refused (E_POLICY_JOB_TAMPERED)', async () => {
    const s = await rawServer(3);
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    const first = signJobBundle(kit, bundle(jobDefinition({ rounds: 1, deploy: ['@ALL'] })), id);
    const checks = VERIFIED_JOB_SIGNATURES.checks;
    expect(await s.deploy('site-1', id, first)).toMatchObject({ ok: true });
    // Another bundle (other meta.json) signed under the same id: a new signature, checked at site-2.
    const second = signJobBundle(kit, bundle(jobDefinition({ rounds: 2, deploy: ['@ALL'] })), id);
    expect(await s.deploy('site-2', id, second)).toMatchObject({ ok: true });
    expect(VERIFIED_JOB_SIGNATURES.checks - checks).toBe(2);
    // The first job's files with the second's signature: never taken from the cache.
    const mixed: JobBundle = { ...first, signature: second.signature! };
    const refused = await s.deploy('site-3', id, mixed);
    expect(refused).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    // Its manifest verified under another signature: the cached signature is the only one taken as checked.
    const forged = JSON.parse(new TextDecoder().decode(first.signature)) as Record<string, string>;
    forged['signature'] = Buffer.from(forged['signature']!, 'base64').reverse().toString('base64');
    const again = await s.deploy('site-3', id, { ...first, signature: new TextEncoder().encode(JSON.stringify(forged)) });
    expect(again).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    expect(s.sites[2]!.engine.jobs()).toEqual([]);
  });
});

describe("an aggregating relay's audit events at a thousand sites", () => {
  it('name the first 20 sites and how many more (the event data lists them all)', () => {
    const sites = Array.from({ length: 1000 }, (_, i) => `site-${i + 1}`);
    expect(someOf(sites.slice(0, 3))).toBe('site-1, site-2, site-3');
    const msg = `relay relay-1 runs job x with ${sites.length} sites (${someOf(sites)})`;
    expect(msg).toContain('site-20 and 980 more');
    expect(msg).not.toContain('site-21');
    // An audit message holds at most 8,192 characters (@flare/audit, E_AUDIT_EVENT): all 1,000 names did not fit.
    expect(msg.length).toBeLessThan(8192);
    expect(`(${sites.join(', ')})`.length).toBeGreaterThan(8192);
  });
});

describe("an aggregating relay's reports of its sites during a login storm", () => {
  it('changes within the window go up in one report; a change after it in the next; cancel drops a pending one', () => {
    vi.useFakeTimers();
    try {
      let reports = 0;
      const soon = coalesce(() => void reports++, 2_000);
      for (let i = 0; i < 1000; i++) soon();
      expect(reports).toBe(0);
      vi.advanceTimersByTime(2_000);
      expect(reports).toBe(1);
      soon();
      vi.advanceTimersByTime(1_999);
      expect(reports).toBe(1);
      vi.advanceTimersByTime(1);
      expect(reports).toBe(2);
      soon();
      soon.cancel();
      vi.advanceTimersByTime(10_000);
      expect(reports).toBe(2);
      soon();
      vi.advanceTimersByTime(2_000);
      expect(reports).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });
});
