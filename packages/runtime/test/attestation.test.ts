// Attestation gating of the engines (issue 10's runtime part): evidence from @flare/cc-attest's test attester,
// signed by a test authority made here, bound to each in-memory session's exported keying material.
import { randomBytes } from 'node:crypto';
import { isFlareError, type AuditEventInput } from '@flare/core';
import { parseAttestationPolicy, type AttestationEvidence, type Attester } from '@flare/cc-attest';
import { TestAttester, createTestAuthority, type TestAuthority } from '@flare/cc-attest/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AttestationOptions } from '../src/attestation/gate.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { outgoing, parseMessage } from '../src/protocol/messages.js';
import { memoryHub, type MemoryHub } from '../src/testing/channels.js';
import { ADMIN, signingAdmin, SERVER, bundle, closeAll, jobDefinition, site, startServer, startSite as helperSite, tempDir, until } from './helpers.js';

let authority: TestAuthority;
beforeAll(() => {
  authority = createTestAuthority();
});

afterEach(closeAll);

// The default SNP rules (debug forbidden, VMPL 0, ...) apply once the policy names an snp section.
const policy = parseAttestationPolicy({ version: 1, require: ['snp'], snp: {} });
const DEBUG_GUEST = 0x30000n | (1n << 19n); // GUEST_POLICY bit 19 = DEBUG (SEV-SNP ABI 56860)

const goodAttester = (): Attester => new TestAttester(authority, { type: 'snp' });
const debugAttester = (): Attester => new TestAttester(authority, { type: 'snp', snp: { policy: DEBUG_GUEST } });

/** An attester that is genuine for its first `good` reports and then reports a debug guest. */
function turningAttester(good: number): Attester & { calls: number } {
  const a = { name: 'test:turning', type: 'snp', calls: 0, collect: async (nonce: Uint8Array): Promise<AttestationEvidence[]> => (a.calls++ < good ? goodAttester() : debugAttester()).collect(nonce) };
  return a;
}

type Over = { [K in keyof AttestationOptions]?: AttestationOptions[K] | undefined };
/** Attestation options for a participant; `over` may unset a field (e.g. `policy: undefined`: it verifies nobody). */
const gate = (attesters: Attester[], over: Over = {}): AttestationOptions =>
  // 30 s to answer: periodic checks queue behind each other on a busy machine; tests of the timeout set their own.
  Object.fromEntries(Object.entries({ policy, attesters, trust: authority.trust, intervalMs: 0, timeoutMs: 30_000, ...over }).filter(([, v]) => v !== undefined)) as AttestationOptions;

async function server(attestation: AttestationOptions | undefined, opts: { sessions?: boolean; deployWaitMs?: number } = {}) {
  const hub = memoryHub(SERVER, { sessions: opts.sessions ?? true });
  const s = await startServer(await tempDir(), { hub, ...(attestation === undefined ? {} : { attestation }), limits: { deployWaitMs: opts.deployWaitMs ?? 200, schedulerIntervalMs: 50 } });
  return { engine: s.server, hub, audit: s.audit };
}

async function startSite(n: number, hub: MemoryHub, attestation: AttestationOptions | undefined) {
  return helperSite(n, hub, attestation === undefined ? {} : { attestation });
}

/** A site the server (or the site itself) refuses: it stops on its own; the error is its stopReason. */
async function refusedSite(n: number, hub: MemoryHub, attestation: AttestationOptions | undefined) {
  const s = await startSite(n, hub, attestation);
  await s.engine.done;
  return { error: s.engine.stopReason, audit: s.audit, engine: s.engine };
}

const actions = (a: { readonly events: ReadonlyArray<AuditEventInput & { id: string }> }, action: string) => a.events.filter((e) => e.action === action);

describe('attestation gating in the engines', () => {
  it('server and sites attest each other at login and before deploy; the job runs and every check is audited', async () => {
    const srv = await server(gate([goodAttester()]));
    const sites = await Promise.all([1, 2, 3].map((n) => startSite(n, srv.hub, gate([goodAttester()]))));
    await Promise.all(sites.map((x) => x.engine.registered()));
    const admin = await signingAdmin(srv.hub, ADMIN, 5000);
    const id = await admin.submit(bundle());
    const rec = await srv.engine.waitForJob(id, 20_000);
    admin.close();
    expect(rec.status).toBe('FINISHED');
    const verified = actions(srv.audit, 'attestation_verified');
    for (const n of [1, 2, 3]) {
      const purposes = verified.filter((e) => e.user === `site-${n}`).map((e) => String(e.data?.['purpose']));
      expect(purposes).toContain('login#1');
      expect(purposes).toContain(`deploy:${id}#2`);
    }
    for (const s of sites) {
      const own = actions(s.audit, 'attestation_verified').map((e) => String(e.data?.['purpose']));
      expect(own).toEqual(expect.arrayContaining(['login#1', `deploy:${id}#2`]));
      // This site also produced evidence for the server, bound to the same session.
      expect(actions(s.audit, 'attestation_evidence_sent').map((e) => e.data?.['purpose'])).toEqual(expect.arrayContaining(['login#1', `deploy:${id}#2`]));
    }
    expect(actions(srv.audit, 'attestation_refused')).toHaveLength(0);
  });

  it('refuses a site whose evidence shows a debug guest at login (E_ATTEST_POLICY_DEBUG): audited on both sides, the site stops and the job runs without waiting for it', async () => {
    const srv = await server(gate([goodAttester()]), { deployWaitMs: 60_000 });
    await (await startSite(1, srv.hub, gate([goodAttester()]))).engine.registered();
    await (await startSite(2, srv.hub, gate([goodAttester()]))).engine.registered();
    const bad = await refusedSite(3, srv.hub, gate([debugAttester()]));
    expect(isFlareError(bad.error, 'E_ATTEST_POLICY_DEBUG')).toBe(true);
    const refused = actions(srv.audit, 'attestation_refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ user: 'site-3', data: { code: 'E_ATTEST_POLICY_DEBUG', check: 'policy.snp.debug', purpose: 'login#1' } });
    expect(refused[0]!.msg).toMatch(/site-3 refused at login: E_ATTEST_POLICY_DEBUG: .*DEBUG/);
    expect(actions(bad.audit, 'attestation_refused_by_peer')[0]).toMatchObject({ data: { code: 'E_ATTEST_POLICY_DEBUG' } });
    expect(srv.engine.registry.get('site-3')).toBeUndefined();
    // deployWaitMs is a minute: the job starts with the two attested sites because site-3 will not come back.
    const admin = await signingAdmin(srv.hub, ADMIN, 5000);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 1 })));
    const rec = await srv.engine.waitForJob(id, 15_000);
    admin.close();
    expect(rec.status).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_ATTEST_POLICY_DEBUG: /);
  });

  it('a site refuses a server whose evidence fails (the other direction) and tells it why', async () => {
    const srv = await server(gate([debugAttester()], { policy: undefined }));
    const bad = await refusedSite(1, srv.hub, gate([goodAttester()]));
    expect(isFlareError(bad.error, 'E_ATTEST_POLICY_DEBUG')).toBe(true);
    expect(actions(bad.audit, 'attestation_refused')[0]).toMatchObject({ user: 'server', data: { code: 'E_ATTEST_POLICY_DEBUG', purpose: 'login#1' } });
    const left = await until(() => actions(srv.audit, 'client_left')[0]);
    expect(left).toMatchObject({ user: 'site-1', data: { code: 'E_ATTEST_POLICY_DEBUG' } });
    expect(actions(bad.audit, 'registered')).toHaveLength(0);
    // Refused for good inside the authenticated session: it does not dial again.
    expect(srv.hub.channels).toHaveLength(1);
  });

  it('drops a site whose platform changes after login at the next periodic check, and the site stops with the reason', async () => {
    const srv = await server(gate([goodAttester()], { intervalMs: 150 }));
    const turning = turningAttester(1);
    const s = await startSite(1, srv.hub, gate([turning]));
    await until(() => actions(srv.audit, 'attestation_refused')[0], 5000);
    expect(actions(srv.audit, 'attestation_refused')[0]).toMatchObject({ user: 'site-1', data: { code: 'E_ATTEST_POLICY_DEBUG', purpose: 'periodic#2' } });
    expect(actions(srv.audit, 'attestation_refused')[0]!.msg).toContain('at a periodic check');
    await s.engine.done;
    expect(s.engine.stopReason?.code).toBe('E_ATTEST_POLICY_DEBUG');
    expect(actions(s.audit, 'site_stopped')[0]).toMatchObject({ data: { code: 'E_ATTEST_POLICY_DEBUG' } });
    await until(() => (srv.engine.registry.get('site-1') === undefined ? true : undefined));
  });

  it('a site checks the server periodically too and stops when its evidence turns bad', async () => {
    const turning = turningAttester(1);
    const srv = await server(gate([turning], { policy: undefined }));
    const s = await startSite(1, srv.hub, gate([goodAttester()], { intervalMs: 150 }));
    await s.engine.done;
    expect(s.engine.stopReason?.code).toBe('E_ATTEST_POLICY_DEBUG');
    expect(actions(s.audit, 'attestation_refused')[0]).toMatchObject({ user: 'server', data: { purpose: 'periodic#2' } });
  });

  it('refuses to deploy a job to a site whose fresh evidence fails before the deploy, and drops it', async () => {
    const srv = await server(gate([goodAttester()]));
    await (await startSite(1, srv.hub, gate([goodAttester()]))).engine.registered();
    await (await startSite(2, srv.hub, gate([goodAttester()]))).engine.registered();
    const s3 = await startSite(3, srv.hub, gate([turningAttester(1)]));
    await s3.engine.registered();
    const admin = await signingAdmin(srv.hub, ADMIN, 5000);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 1 })));
    const rec = await srv.engine.waitForJob(id, 15_000);
    admin.close();
    expect(rec.status).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_ATTEST_POLICY_DEBUG: /);
    expect(actions(srv.audit, 'attestation_refused')[0]).toMatchObject({ user: 'site-3', data: { purpose: `deploy:${id}#2` } });
    expect(actions(srv.audit, 'deploy_sent').map((e) => e.data?.['site'])).not.toContain('site-3');
    await s3.engine.done;
    expect(s3.engine.stopReason?.code).toBe('E_ATTEST_POLICY_DEBUG');
  });

  it('a site refuses a job when the server fails its fresh evidence before the deploy, and stops', async () => {
    const srv = await server(gate([turningAttester(1)], { policy: undefined }));
    const s = await startSite(1, srv.hub, gate([goodAttester()]));
    await s.engine.registered();
    const admin = await signingAdmin(srv.hub, ADMIN, 5000);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 1, min_clients: 1, deploy: ['site-1'] })));
    const rec = await srv.engine.waitForJob(id, 15_000);
    admin.close();
    expect(rec.status).toBe('FAILED');
    expect(rec.refused['site-1']).toMatch(/^E_ATTEST_POLICY_DEBUG: /);
    expect(actions(s.audit, 'deploy_refused')[0]).toMatchObject({ job: id, data: { code: 'E_ATTEST_POLICY_DEBUG' } });
    await s.engine.done;
    expect(s.engine.stopReason?.code).toBe('E_ATTEST_POLICY_DEBUG');
  });

  it('answers overlapping requests in turn: periodic checks every 50 ms on both sides meet the deploy checks, and nobody is refused', async () => {
    const slow = (): Attester => ({ name: 'test:slow', collect: async (nonce) => new Promise((r) => setTimeout(() => r(goodAttester().collect(nonce)), 60)) });
    const srv = await server(gate([slow()], { intervalMs: 50 }));
    const sites = [];
    for (const n of [1, 2]) sites.push(await startSite(n, srv.hub, gate([slow()], { intervalMs: 50 })));
    await Promise.all(sites.map((x) => x.engine.registered()));
    const admin = await signingAdmin(srv.hub, ADMIN, 5000);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 2, deploy: ['site-1', 'site-2'] })));
    const rec = await srv.engine.waitForJob(id, 20_000);
    admin.close();
    expect(rec.status).toBe('FINISHED');
    expect(actions(srv.audit, 'attestation_refused')).toHaveLength(0);
    for (const s of sites) expect(actions(s.audit, 'attestation_refused')).toHaveLength(0);
    expect(actions(srv.audit, 'attestation_verified').filter((e) => String(e.data?.['purpose']).startsWith('periodic')).length).toBeGreaterThan(0);
  });

  it('refuses evidence not bound to this session and peer (E_ATTEST_NONCE): a genuine report with a stale nonce', async () => {
    const srv = await server(gate([goodAttester()]));
    const stale = randomBytes(64);
    const replayer: Attester = { name: 'test:replay', collect: async () => goodAttester().collect(stale) };
    const bad = await refusedSite(1, srv.hub, gate([replayer], { policy: undefined }));
    expect(isFlareError(bad.error, 'E_ATTEST_NONCE')).toBe(true);
    expect(actions(srv.audit, 'attestation_refused')[0]).toMatchObject({ data: { code: 'E_ATTEST_NONCE', check: 'snp.nonce' } });
    expect(bad.error).toBeInstanceOf(Error);
  });

  it('refuses evidence that does not chain to the trusted roots (E_ATTEST_CHAIN): the test authority is not the vendors', async () => {
    const srv = await server(gate([goodAttester()], { trust: undefined }));
    const bad = await refusedSite(1, srv.hub, gate([goodAttester()], { policy: undefined }));
    expect(isFlareError(bad.error, 'E_ATTEST_CHAIN')).toBe(true);
  });

  it('refuses a site that cannot produce evidence (E_ATTEST_MISSING_EVIDENCE, with its reason)', async () => {
    const srv = await server(gate([goodAttester()]));
    const bad = await refusedSite(1, srv.hub, undefined);
    expect(isFlareError(bad.error, 'E_ATTEST_MISSING_EVIDENCE')).toBe(true);
    expect(String(actions(srv.audit, 'attestation_refused')[0]!.msg)).toContain('E_ATTEST_ATTESTER');
  });

  it('refuses a connection without an authenticated session to bind evidence to (E_RUNTIME_ATTESTATION_UNBOUND)', async () => {
    const srv = await server(gate([goodAttester()]), { sessions: false });
    const bad = await refusedSite(1, srv.hub, gate([goodAttester()], { policy: undefined }));
    expect(isFlareError(bad.error, 'E_RUNTIME_ATTESTATION_UNBOUND')).toBe(true);
  });

  async function rawSite(srv: Awaited<ReturnType<typeof server>>, answer: (ch: PeerChannel, id: string) => void): Promise<PeerChannel> {
    const ch = await srv.hub.connect(site(1));
    ch.onMessage((h) => {
      const m = parseMessage(h);
      if (m.t === 'attest_request') answer(ch, m.id);
    });
    await ch.send(outgoing({ t: 'register', resources: {} }));
    return ch;
  }

  it('refuses a peer that never answers within the timeout (E_ATTEST_MISSING_EVIDENCE)', async () => {
    const srv = await server(gate([goodAttester()], { timeoutMs: 200 }));
    await rawSite(srv, () => undefined);
    const r = await until(() => actions(srv.audit, 'attestation_refused')[0]);
    expect(r).toMatchObject({ data: { code: 'E_ATTEST_MISSING_EVIDENCE', check: 'runtime.reply' } });
  });

  it('refuses malformed evidence before verifying anything (E_ATTEST_MALFORMED)', async () => {
    const srv = await server(gate([goodAttester()]));
    await rawSite(srv, (ch, id) => void ch.send(outgoing({ t: 'attest_reply', id, ok: true }), new TextEncoder().encode('[{"type":"snp","evidence":"!!","certificates":[]}]')));
    const r = await until(() => actions(srv.audit, 'attestation_refused')[0]);
    expect(r).toMatchObject({ data: { code: 'E_ATTEST_MALFORMED' } });
  });

  it('without a policy (or with nothing required) nobody is asked for evidence', async () => {
    const srv = await server(gate([goodAttester()], { policy: parseAttestationPolicy({ version: 1 }) }));
    const s = await startSite(1, srv.hub, undefined);
    await s.engine.registered();
    expect(s.engine.jobs()).toEqual([]);
    expect(actions(srv.audit, 'attestation_verified')).toHaveLength(0);
    expect(actions(s.audit, 'registered')).toHaveLength(1);
  });
});
