// Forwarding relays (issue #18 item 1): real mtls sockets, real @flare/auth sessions end to end through one or
// two relays, and hostile relays whose tampering the far end's session detects with the auth codes.
import { expectFlareCodeAsync } from '@flare/core/testing';
import { createClientAuth, createServerAuth, type Session } from '@flare/auth';
import type { Kit } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { clientOptionsFromKit, dial, listen, type Connection, type ServerEndpoint } from '@flare/transport';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import { jobTrustFromKit } from '../src/protocol/job-trust.js';
import { connectToServer, linkToServer, listenForParticipants } from '../src/protocol/network.js';
import { relayPathOf } from '../src/relay/path.js';
import { startRelay, type Relay, type RelayedMessage, type RelayHooks, type RelayOptions } from '../src/relay/relay.js';
import { ServerEngine } from '../src/server/engine.js';
import { ClientEngine } from '../src/site/engine.js';
import { bundle, jobDefinition, learnerFactory, sitePolicy, tempDir , closedAfterEach, provisionKits , FORWARDING_CHAIN } from './helpers.js';

const PROJECT = testProjectYaml({ name: 'rt-relay', sites: [], admins: [['admin@nvidia.com', 'nvidia', 'project_admin']], participants: FORWARDING_CHAIN, fields: { description: 'relays in forwarding mode' } });

let kits: Map<string, Kit>;
const open = closedAfterEach();

beforeAll(async () => {
  kits = await provisionKits(PROJECT);
});

const kit = (name: string): Kit => kits.get(name)!;
const local = (port: number): Array<{ host: string; port: number }> => [{ host: '127.0.0.1', port }];

/** A bare server endpoint with @flare/auth's login (no engine): its connections and their close reasons. */
async function authServer(): Promise<{ server: ServerEndpoint<Session>; next(): Promise<Connection<Session>> }> {
  const auth = createServerAuth({ kit: kit('localhost') });
  const server = await listen<Session>({ security: 'mtls', port: 0, tls: { certPem: kit('localhost').certPem, privateKey: kit('localhost').privateKey, caPem: kit('localhost').rootCaPem }, authenticate: (c) => auth.accept(c) });
  open.push(server);
  const waiting: Array<(c: Connection<Session>) => void> = [];
  const queued: Array<Connection<Session>> = [];
  server.on('connection', (c: Connection<Session>) => {
    const w = waiting.shift();
    if (w !== undefined) w(c);
    else queued.push(c);
  });
  return { server, next: () => (queued.length > 0 ? Promise.resolve(queued.shift()!) : new Promise((r) => waiting.push(r))) };
}

async function relay(name: string, upstreamPort: number, options: Partial<RelayOptions> = {}, hooks?: RelayHooks): Promise<Relay> {
  const r = await startRelay({ kit: kit(name), port: 0, upstream: local(upstreamPort), ...options }, hooks);
  open.push(r);
  return r;
}

/** A site's login through `port` (a relay, or the server) with the relay path its kit signs. */
async function siteDial(name: string, port: number, via = relayPathOf(kit(name))): Promise<Connection<Session>> {
  const k = kit(name);
  const auth = createClientAuth({ kit: k, ...(via.length > 0 ? { via } : {}) });
  const conn = await dial<Session>({ ...clientOptionsFromKit(k), targets: local(port), authenticate: (c) => auth.login(c) });
  open.push({ close: () => conn.close() });
  return conn;
}

const codeOf = async (c: Connection<unknown>): Promise<string | undefined> => (await c.closed).error?.code;
const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('relay in forwarding mode', () => {
  it('carries an end-to-end session through two chained relays, both ways, small and streamed (3 MiB) messages', async () => {
    const s = await authServer();
    const top2 = await relay('relay-top', s.server.port);
    const r1 = await relay('relay-1', top2.port);
    const site = await siteDial('site-1', r1.port);
    const at = await s.next();
    expect(at.auth.peer).toMatchObject({ name: 'site-1', type: 'client', via: ['relay-top', 'relay-1'] });
    expect(site.auth.peer.name).toBe('localhost');
    expect(site.auth.channelBound).toBe(false);
    const big = bytes(3 * 1024 * 1024 + 5);
    await site.send({ type: 'update', round: 1 }, big);
    const got = await at.receive();
    expect(got.header).toEqual({ type: 'update', round: 1 });
    expect(Buffer.compare(got.payload, big)).toBe(0);
    await at.send({ type: 'model' }, bytes(1000, 7));
    const back = await site.receive();
    expect(back.payload).toEqual(bytes(1000, 7));
    expect(r1.sites().map((x) => x.name)).toEqual(['site-1']);
    expect(top2.sites()[0]).toMatchObject({ name: 'site-1', via: ['relay-top', 'relay-1'] });
    expect(top2.sites()[0]!.up.bytes).toBeGreaterThanOrEqual(big.length);
  });

  // The relay sees what a TLS-terminating proxy sees; the session's MAC, sequence and binding defeat it.
  const hostile: Array<[string, string, (m: RelayedMessage, i: number, held: RelayedMessage[]) => RelayedMessage[]]> = [
    ['alters a payload byte', 'E_AUTH_MAC', (m, i) => (i === 1 ? [{ ...m, payload: Uint8Array.from(m.payload, (b, j) => (j === 0 ? b ^ 1 : b)) }] : [m])],
    ['alters a header field', 'E_AUTH_MAC', (m, i) => (i === 1 ? [{ ...m, header: { ...m.header, round: 99 } }] : [m])],
    ['drops a message', 'E_AUTH_OUT_OF_ORDER', (m, i) => (i === 1 ? [] : [m])],
    ['reorders two messages', 'E_AUTH_OUT_OF_ORDER', (m, i, held) => (i === 1 ? (held.push(m), []) : i === 2 ? [m, held.pop()!] : [m])],
    ['replays a message', 'E_AUTH_REPLAY', (m, i) => (i === 1 ? [m, m] : [m])],
    ['forges a trailer from another message', 'E_AUTH_MAC', (m, i, held) => (i === 0 ? (held.push(m), [m]) : i === 1 ? [{ ...m, trailer: held[0]!.trailer }] : [m])],
  ];
  for (const [what, code, tamper] of hostile) {
    it(`a relay that ${what} is detected by the server like a man in the middle (${code})`, async () => {
      const s = await authServer();
      let i = 0;
      const held: RelayedMessage[] = [];
      const r = await relay('relay-top', s.server.port, {}, { forward: (d, m) => (d === 'up' ? tamper(m, i++, held) : [m]) });
      const site = await siteDial('site-2', r.port);
      const at = await s.next();
      for (let n = 0; n < 4; n++) await site.send({ type: 'update', round: n }, bytes(64, n)).catch(() => undefined);
      expect(await codeOf(at)).toBe(code);
      // The server's refusal reaches the site sealed by the session, through the relay: authentic.
      const closed = await site.closed;
      expect(closed.error?.code).toBe(code);
      expect(closed.authenticated).toBe(true);
    });
  }

  it('a relay that alters a message towards the site is detected by the site (E_AUTH_MAC)', async () => {
    const s = await authServer();
    const r = await relay('relay-top', s.server.port, {}, { forward: (d, m) => (d === 'down' ? [{ ...m, payload: new Uint8Array(m.payload.length) }] : [m]) });
    const site = await siteDial('site-2', r.port);
    const at = await s.next();
    await at.send({ type: 'model' }, bytes(100));
    expect(await codeOf(site)).toBe('E_AUTH_MAC');
  });

  it('refuses a site that claims another relay than the one it connects to (E_AUTH_RELAY_PATH, at the relay)', async () => {
    const s = await authServer();
    const top = await relay('relay-top', s.server.port);
    const r1 = await relay('relay-1', top.port);
    // site-2's kit says relay-top; it connects to relay-1.
    await expectFlareCodeAsync(siteDial('site-2', r1.port), 'E_AUTH_RELAY_PATH');
    // site-3 sits under the server; through a relay it names no relay at all.
    await expectFlareCodeAsync(siteDial('site-3', top.port), 'E_AUTH_RELAY_PATH');
  });

  it('refuses at the server a login that names a relay but comes directly, or through another relay (E_AUTH_RELAY_PATH)', async () => {
    const s = await authServer();
    await expectFlareCodeAsync(siteDial('site-2', s.server.port), 'E_AUTH_RELAY_PATH');
    // relay-1 skips relay-top and takes site-1's login (via relay-top, relay-1) straight to the server.
    const r1 = await relay('relay-1', s.server.port);
    await expectFlareCodeAsync(siteDial('site-1', r1.port), 'E_AUTH_RELAY_PATH');
  });

  it('refuses a site whose login signs no relay path, through a relay (E_AUTH_RELAY_PATH)', async () => {
    const s = await authServer();
    const top = await relay('relay-top', s.server.port);
    await expectFlareCodeAsync(siteDial('site-2', top.port, []), 'E_AUTH_RELAY_PATH');
  });

  it('enforces per-site limits: sites at once, and messages per second (E_RUNTIME_RELAY_LIMIT)', async () => {
    const s = await authServer();
    const r = await relay('relay-top', s.server.port, { limits: { maxSites: 1, maxMessagesPerSecond: 2, burstSeconds: 1 } });
    const site = await siteDial('site-2', r.port);
    const at = await s.next();
    await expectFlareCodeAsync(siteDial('site-1', (await relay('relay-1', r.port)).port), 'E_RUNTIME_RELAY_LIMIT');
    for (let n = 0; n < 10; n++) await site.send({ type: 'ping', n }).catch(() => undefined);
    expect(await codeOf(site)).toBe('E_RUNTIME_RELAY_LIMIT');
    // The server sees the site's connection end (with the relay's reason), never a half-forwarded message.
    expect(await codeOf(at)).toBe('E_RUNTIME_RELAY_LIMIT');
  });

  it('refuses to run from a kit that is not a relay kit (E_RUNTIME_CONFIG)', async () => {
    await expectFlareCodeAsync(startRelay({ kit: kit('site-1'), port: 0 }), 'E_RUNTIME_CONFIG');
  });

  it('runs a whole job with sites behind chained relays and one direct; a lost relay is survived: sites reconnect through it when it is back', async () => {
    const listener = await listenForParticipants({ kit: kit('localhost'), port: 0 });
    const server = await ServerEngine.start({ name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true, limits: { deployWaitMs: 100, schedulerIntervalMs: 50 } });
    open.push(server);
    const top = await relay('relay-top', listener.port);
    const r1 = await relay('relay-1', top.port);
    const siteAt = async (name: string, port: number): Promise<ClientEngine> => {
      const k = kit(name);
      const engine = await ClientEngine.start({
        site: { name, org: k.participant.org },
        link: linkToServer({ kit: k, targets: local(port), backoff: { initialMs: 50, maxMs: 200 } }),
        policy: { ...sitePolicy(), jobTrust: jobTrustFromKit({ project: k.project, rootCaPem: k.rootCaPem }) },
        learners: new Map([['towards', learnerFactory(1)]]),
        filters: new Map(),
        workspace: await tempDir(),
      });
      open.push(engine);
      await engine.registered(20_000);
      return engine;
    };
    await siteAt('site-1', r1.port);
    await siteAt('site-2', top.port);
    await siteAt('site-3', listener.port);
    const admin = new AdminClient(await connectToServer({ kit: kit('admin@nvidia.com'), targets: local(listener.port) }), { signer: kit('admin@nvidia.com') });
    open.push({ close: async () => admin.close() });
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['site-1', 'site-2', 'site-3'], rounds: 2 })));
    const rec = await server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    expect([...rec.history[1]!.contributors].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    // The server knows each site's relay path (authenticated: signed by the site, checked at every hop) and the
    // admin's job status shows it.
    const seen = new Map(server.registry.sightings().map((x) => [x.name, x.via]));
    expect(seen.get('site-1')).toEqual(['relay-top', 'relay-1']);
    expect(seen.get('site-2')).toEqual(['relay-top']);
    expect(seen.get('site-3')).toBeUndefined();
    const status = await admin.jobStatus(id);
    expect(status.sites.find((x) => x.name === 'site-1')?.via).toEqual(['relay-top', 'relay-1']);

    // relay-1 goes away: site-1's session ends; a new relay-1 on the same port carries it again.
    const port = r1.port;
    const lost = new Promise<string>((resolve) => top.on('closed', (c) => resolve(c.site.name)));
    await r1.close();
    expect(await lost).toBe('site-1');
    const again = await relay('relay-1', top.port, { port });
    await new Promise<void>((resolve) => {
      if (again.sites().length > 0) resolve();
      again.on('site', () => resolve());
    });
    expect(again.sites().map((x) => x.name)).toEqual(['site-1']);
    const id2 = await admin.submit(bundle(jobDefinition({ deploy: ['site-1', 'site-2', 'site-3'], rounds: 1 })));
    expect((await server.waitForJob(id2, 30_000)).status).toBe('FINISHED');
  });
});
