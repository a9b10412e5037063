// Revocation reaches what forwarding relays carry (issue #14.10, the leftovers): a revoked relay's certificate
// cuts at once every session that came through it (at the server: the relay's serial rides with the session; at
// the relay above a revoked middle relay: the serial of the hop it received the login from), logins through it
// are refused with E_CERT_REVOKED, and a forwarding relay keeps the newest root-signed CRL it sees pass down
// (welcome, `crl`), refuses an older one (E_CRL_ROLLBACK) and checks the logins it carries against its newest.
// Real mtls sockets, real @flare/auth sessions, real kits.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FlareError } from '@flare/core';
import { createClientAuth, createServerAuth, type Session } from '@flare/auth';
import { clientOptionsFromKit, dial, listen, type Connection } from '@flare/transport';
import { createCrl, CrlStore, loadCrl, loadKit, parseProject, provision, resolveProjectDir, revoke, verifyCertificate, type Kit } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { linkToServer } from '../src/protocol/network.js';
import { relayPathOf } from '../src/relay/path.js';
import { MAX_CRL_FILE_BYTES } from '../src/server/crl-watch.js';
import { startRelay, type Relay } from '../src/relay/relay.js';
import { ClientEngine } from '../src/site/engine.js';
import { memoryLink } from '../src/testing/channels.js';
import { TEST_ROOT, auditRecorder, closeAll, closedAfterEach, sitePolicy, startServer, tempDir, until , FORWARDING_CHAIN , crlWatchingServer } from './helpers.js';

const PROJECT = testProjectYaml({ name: 'rt_crl_relay', sites: [], participants: FORWARDING_CHAIN, fields: { description: 'revoking forwarding relays' } });

afterEach(closeAll);
const open = closedAfterEach();

interface Project {
  readonly kits: Map<string, Kit>;
  readonly projectDir: string;
}

/** A fresh provisioning per test: CRLs are cumulative, so one test's revocation must not leak into another. */
async function project(): Promise<Project> {
  const workspace = await tempDir();
  const r = await provision(parseProject(PROJECT), { workspace });
  const kits = new Map<string, Kit>();
  for (const k of r.kits) kits.set(k.name, await loadKit(join(r.prodDir, k.name)));
  return { kits, projectDir: await resolveProjectDir(workspace) };
}

const serialOf = (kit: Kit): string => verifyCertificate(kit.certPem, { rootCaPem: kit.rootCaPem }).serial;
const local = (port: number): Array<{ host: string; port: number }> => [{ host: '127.0.0.1', port }];

const realServer = (p: Project, seed?: string): ReturnType<typeof crlWatchingServer> => crlWatchingServer(p.kits.get('localhost')!, open, seed);

/** A forwarding relay; with `crls` it keeps the newest CRL it sees (its own CrlStore, optionally seeded). */
async function forwardingRelay(p: Project, name: string, upstreamPort: number, o: { crls?: boolean; seed?: string } = {}): Promise<{ relay: Relay; crls: CrlStore | undefined; audit: ReturnType<typeof auditRecorder>; refused: FlareError[] }> {
  const kit = p.kits.get(name)!;
  const audit = auditRecorder(name);
  const crls = o.crls === true ? await CrlStore.open({ rootCaPem: kit.rootCaPem, file: join(await tempDir(), 'crl-state.json'), ...(o.seed === undefined ? {} : { seed: o.seed }) }) : undefined;
  const relay = await startRelay({ kit, port: 0, upstream: local(upstreamPort), ...(crls === undefined ? {} : { crls }), audit: audit.hook, connectTimeoutMs: 30_000 });
  open.push(relay);
  const refused: FlareError[] = [];
  relay.on('refused', (r) => refused.push(r.error));
  return { relay, crls, audit, refused };
}

async function realSite(p: Project, name: string, port: number, register = true): Promise<{ engine: ClientEngine; audit: ReturnType<typeof auditRecorder> }> {
  const kit = p.kits.get(name)!;
  const audit = auditRecorder(name);
  const engine = await ClientEngine.start({
    site: { name: kit.participant.name, org: kit.participant.org },
    link: linkToServer({ kit, targets: local(port), backoff: { initialMs: 50, maxMs: 200 } }),
    policy: sitePolicy(),
    learners: new Map(),
    filters: new Map(),
    workspace: await tempDir(),
    crls: await CrlStore.open({ rootCaPem: kit.rootCaPem }),
    audit: audit.hook,
  });
  open.push(engine);
  if (register) await engine.registered(60_000);
  return { engine, audit };
}

describe('revoking a forwarding relay cuts what it carries (issue #14.10)', () => {
  it('the server cuts at once every session that came through a revoked relay (session_revoked naming the relay), and refuses logins through it (E_CERT_REVOKED)', async () => {
    const p = await project();
    const { server, port, file, audit } = await realServer(p);
    // relay-top here keeps no CRL of its own: the cut is the server's, from the relay serial in the session.
    const top = await forwardingRelay(p, 'relay-top', port);
    const site2 = await realSite(p, 'site-2', top.relay.port);
    await realSite(p, 'site-3', port);
    expect(server.registry.names()).toEqual(['site-2', 'site-3']);

    const { crlPem, serials } = await revoke({ projectDir: p.projectDir, name: 'relay-top' });
    expect(serials).toEqual([serialOf(p.kits.get('relay-top')!)]);
    await writeFile(file, crlPem);

    const cut = await until(() => audit.events.find((e) => e.action === 'session_revoked'), 30_000, 'session_revoked');
    // site-2 itself is not revoked: the code it is cut with is one it retries after.
    expect(cut).toMatchObject({ user: 'site-2', data: { code: 'E_RUNTIME_RELAY_REVOKED', serial: serials[0], relay: 'relay-top', via: ['relay-top'], type: 'client' } });
    expect(cut.msg).toContain("relay 'relay-top'");
    // site-2 is not revoked itself: it reconnects through relay-top, and the server refuses the revoked hop.
    const refusedLogin = await until(() => top.refused.find((e) => e.code === 'E_CERT_REVOKED'), 30_000, 'a relayed login refused with E_CERT_REVOKED');
    expect(refusedLogin.message).toMatch(/revoked/i);
    await until(() => (server.registry.names().length === 1 ? true : undefined), 30_000, 'site-2 gone');
    expect(server.registry.names()).toEqual(['site-3']);
    expect(audit.events.filter((e) => e.action === 'session_revoked').map((e) => e.user)).toEqual(['site-2']);
    // It keeps trying (a re-issued relay gets it back in): a relay's revocation is not the site's.
    expect(site2.engine.stopReason).toBeUndefined();
  });

  it('revoking a middle relay: the relay above takes the CRL as it passes down, cuts what came through it (session_revoked naming it) and refuses its logins', async () => {
    const p = await project();
    const { server, port, file, audit } = await realServer(p);
    const top = await forwardingRelay(p, 'relay-top', port, { crls: true });
    const r1 = await forwardingRelay(p, 'relay-1', top.relay.port);
    await realSite(p, 'site-1', r1.relay.port);
    await realSite(p, 'site-2', top.relay.port);
    expect(server.registry.names()).toEqual(['site-1', 'site-2']);

    const { crlPem, serials } = await revoke({ projectDir: p.projectDir, name: 'relay-1' });
    await writeFile(file, crlPem);

    // The server cannot see relay-1's certificate (TLS ends at relay-top); relay-top can, and cuts.
    const cut = await until(() => top.audit.events.find((e) => e.action === 'session_revoked'), 30_000, 'session_revoked at relay-top');
    expect(cut).toMatchObject({ user: 'site-1', data: { code: 'E_RUNTIME_RELAY_REVOKED', serial: serials[0], relay: 'relay-1', via: ['relay-top', 'relay-1'] } });
    expect(top.audit.events.find((e) => e.action === 'crl_updated')?.data).toMatchObject({ revoked: 1 });
    expect(top.crls!.current?.revoked.has(serials[0]!)).toBe(true);
    // site-1 comes back through relay-1; relay-top refuses the revoked hop itself, before anything goes upstream.
    const refusedLogin = await until(() => top.refused.find((e) => e.code === 'E_CERT_REVOKED'), 30_000, 'relay-top refuses relay-1');
    expect(refusedLogin.message).toMatch(/revoked/i);
    await until(() => (server.registry.names().length === 1 ? true : undefined), 30_000, 'site-1 gone');
    expect(server.registry.names()).toEqual(['site-2']);
    expect(audit.events.filter((e) => e.action === 'session_revoked')).toEqual([]);
    expect(top.relay.sites().map((s) => s.name)).toEqual(['site-2']);
  });
});

describe('a forwarding relay keeps the newest CRL (issue #14.10)', () => {
  it('refuses an older CRL from upstream (crl_refused, E_CRL_ROLLBACK), keeps its newer one, and refuses a site that one revokes (E_CERT_REVOKED) though the server would admit it', async () => {
    const p = await project();
    const older = (await revoke({ projectDir: p.projectDir, name: 'site-3' })).crlPem;
    const newer = await revoke({ projectDir: p.projectDir, name: 'site-2' });
    // The server was handed only the older CRL; the relay kept the newer one in its workspace (a restart).
    const { port } = await realServer(p, older);
    const top = await forwardingRelay(p, 'relay-top', port, { crls: true, seed: newer.crlPem });
    const newest = top.crls!.crlNumber;

    // site-1 (through relay-1, not revoked) logs in: its welcome carries the server's older CRL past relay-top.
    const r1 = await forwardingRelay(p, 'relay-1', top.relay.port);
    await realSite(p, 'site-1', r1.relay.port);
    const rollback = await until(() => top.audit.events.find((e) => e.action === 'crl_refused'), 30_000, 'crl_refused at relay-top');
    expect(rollback.data).toMatchObject({ code: 'E_CRL_ROLLBACK' });
    expect(top.crls!.crlNumber).toBe(newest);

    // site-2 is revoked by the relay's CRL, not by the server's: the relay refuses it at its hop.
    await realSite(p, 'site-2', top.relay.port, false);
    const refusedLogin = await until(() => top.refused.find((e) => e.code === 'E_CERT_REVOKED'), 30_000, 'relay-top refuses site-2');
    expect(refusedLogin.message).toMatch(/revoked/i);
    expect(top.relay.sites().map((s) => s.name)).toEqual(['site-1']);
  });

  it('a newer CRL taken from upstream cuts a carried site it revokes (the relay cuts before the server does)', async () => {
    const p = await project();
    const { port } = await realServer(p);
    const top = await forwardingRelay(p, 'relay-top', port, { crls: true });
    await realSite(p, 'site-2', top.relay.port);
    const { crlPem, serials } = await revoke({ projectDir: p.projectDir, name: 'site-2' });
    // As the server's `crl` push would hand it over; a foreign or unreadable one is refused (E_CRL_INVALID).
    await top.relay.takeCrl('not a CRL');
    expect(top.audit.events.find((e) => e.action === 'crl_refused')?.data).toMatchObject({ code: 'E_CRL_INVALID' });
    await top.relay.takeCrl(crlPem);
    const cut = await until(() => top.audit.events.find((e) => e.action === 'session_revoked'), 30_000, 'session_revoked at relay-top');
    expect(cut).toMatchObject({ user: 'site-2', data: { code: 'E_CERT_REVOKED', serial: serials[0], via: ['relay-top'] } });
    expect(cut.data).not.toHaveProperty('relay');
  });

  it('a CRL-carrying message larger than a CRL may be is refused unread (crl_refused, E_CRL_INVALID) and still forwarded to the site', async () => {
    const p = await project();
    const kit = p.kits.get('localhost')!;
    // A bare server endpoint stands in for a hostile server: it sends what it likes inside the session.
    const auth = createServerAuth({ kit });
    const accepted: Array<Connection<Session>> = [];
    const server = await listen<Session>({ security: 'mtls', port: 0, tls: { certPem: kit.certPem, privateKey: kit.privateKey, caPem: kit.rootCaPem }, authenticate: (c) => auth.accept(c) });
    open.push(server);
    server.on('connection', (c: Connection<Session>) => accepted.push(c));
    const top = await forwardingRelay(p, 'relay-top', server.port, { crls: true });
    const site = p.kits.get('site-2')!;
    const client = createClientAuth({ kit: site, via: relayPathOf(site) });
    const conn = await dial<Session>({ ...clientOptionsFromKit(site), targets: local(top.relay.port), authenticate: (c) => client.login(c) });
    open.push({ close: () => conn.close() });
    const at = await until(() => accepted[0], 30_000, 'the relayed session at the server');
    await at.send({ t: 'crl' }, new Uint8Array(MAX_CRL_FILE_BYTES + 1));
    const got = await conn.receive();
    expect(got.payload.byteLength).toBe(MAX_CRL_FILE_BYTES + 1);
    const refused = await until(() => top.audit.events.find((e) => e.action === 'crl_refused'), 30_000, 'crl_refused at relay-top');
    expect(refused.data).toMatchObject({ code: 'E_CRL_INVALID' });
    // Refused for its size, before any decoding or parsing.
    expect(refused.msg).toContain(`more than the ${MAX_CRL_FILE_BYTES}`);
    expect(top.crls!.current).toBeUndefined();
  });

  it('a session through a relay the newest CRL already revokes is cut as it is added (a login checked just before the CRL changed)', async () => {
    const relaySerial = 'abcdef0123';
    const { server, hub, audit } = await startServer(await tempDir());
    const identity = { name: 'site-1', org: 'org1', type: 'client' as const, via: ['relay-x'], relaySerial };
    const engine = await ClientEngine.start({
      site: { name: 'site-1', org: 'org1' },
      link: memoryLink(() => hub.connect(identity), { retryMs: 20 }),
      policy: sitePolicy(),
      learners: new Map(),
      filters: new Map(),
      workspace: await tempDir(),
    });
    open.push(engine);
    await engine.registered(30_000);
    const crl = loadCrl(await createCrl({ issuer: TEST_ROOT, entries: [{ serial: relaySerial, date: new Date() }], crlNumber: 2 }), { rootCaPem: TEST_ROOT.certPem });
    expect(server.applyCrl(crl).cut).toEqual([{ name: 'site-1', serial: relaySerial, relay: 'relay-x' }]);
    // The site retries (its relay is revoked, not itself); each new channel through that relay is cut on arrival.
    await until(() => (audit.events.filter((e) => e.action === 'session_revoked').length >= 2 ? true : undefined), 30_000, 'a second session_revoked');
    for (const e of audit.events.filter((x) => x.action === 'session_revoked')) {
      expect(e).toMatchObject({ user: 'site-1', data: { code: 'E_RUNTIME_RELAY_REVOKED', relay: 'relay-x', serial: relaySerial, via: ['relay-x'] } });
    }
    expect(engine.stopReason).toBeUndefined();
    expect(server.registry.names()).toEqual([]);
  });
});
