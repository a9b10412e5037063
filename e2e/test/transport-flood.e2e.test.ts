// Exhaustion before login from one address (#14.6) and by one identity (#14.5), against a real server with the
// login of @flare/auth over mtls: sockets that never finish TLS, upgraded connections that never log in, and a
// site kit opening session after session. Admins must still get in.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientAuth, createServerAuth, type ServerAuth, type Session } from '@flare/auth';
import type { FlareError } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { clientOptionsFromKit, dial, listen, serverOptionsFromKit, type Connection, type Refusal, type ServerEndpoint, type ServerLimits } from '@flare/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject } from './support.js';

let workspace: string;
let serverKit: Kit;
let siteKit: Kit;
let adminKit: Kit;
const cleanup: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), 'flare-e2e-flood-'));
  const r = await provision(parseProject(loopbackProject('e2eflood', { admin: true })), { workspace });
  const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
  [serverKit, siteKit, adminKit] = await Promise.all([loadKit(dir('server1')), loadKit(dir('site-1')), loadKit(dir('admin@nvidia.com'))]);
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
afterAll(() => rm(workspace, { recursive: true, force: true }));

async function startServer(limits: ServerLimits = {}): Promise<{ server: ServerEndpoint<Session>; auth: ServerAuth; refusals: Refusal[] }> {
  const auth = createServerAuth({ kit: serverKit });
  const server = await listen<Session>({ ...serverOptionsFromKit(serverKit), host: '0.0.0.0', port: 0, limits, authenticate: (c) => auth.accept(c) });
  const refusals: Refusal[] = [];
  server.on('refused', (r) => refusals.push(r));
  server.on('connection', (c) => c.on('message', () => void c.send({ ok: true }).catch(() => undefined)));
  cleanup.push(() => server.close());
  return { server, auth, refusals };
}

/**
 * An attacker holding a valid site kit (built from the project's own transport): opens a connection over mtls
 * from `localAddress`, completes the upgrade, and never logs in. Resolves when upgraded or refused.
 */
async function idleConnection(port: number, localAddress = '127.0.0.1'): Promise<void> {
  try {
    const conn = await dial({ ...clientOptionsFromKit(siteKit), targets: [{ host: '127.0.0.1', port }], localAddress });
    cleanup.push(() => conn.close());
  } catch (e) {
    // Refused at the upgrade: the endpoint is full of logins that proved who they are (not expected here).
    expect((e as FlareError).code).toBe('E_TRANSPORT_CONNECTION_LIMIT');
  }
}

/** A TCP socket that never starts TLS. */
function silentSocket(port: number): Promise<Socket> {
  const s = netConnect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  cleanup.push(() => {
    s.destroy();
  });
  return once(s, 'connect').then(() => s);
}

async function adminLogin(port: number, localAddress?: string): Promise<Connection<Session>> {
  const auth = createClientAuth({ kit: adminKit, renewAt: false });
  const conn = await dial<Session>({
    ...clientOptionsFromKit(adminKit),
    targets: [{ host: '127.0.0.1', port }],
    authenticate: (c) => auth.login(c),
    ...(localAddress === undefined ? {} : { localAddress }),
  });
  cleanup.push(() => conn.close());
  return conn;
}

/** Six admin commands, one after the other, as `flare admin` runs them: log in, ask, get the answer, close. */
async function sixAdminCommands(port: number, localAddress?: string): Promise<string[]> {
  const answered: string[] = [];
  for (let i = 0; i < 6; i++) {
    const conn = await adminLogin(port, localAddress);
    const reply = conn.receive();
    await conn.send({ status: i });
    answered.push(`${conn.auth.peer.name}:${String((await reply).header['ok'])}`);
    await conn.close();
  }
  return answered;
}

/** Resolves once the server has reported at least `n` refusals with `code` (they are events: wait for them). */
function refusalsReach(server: ServerEndpoint<Session>, refusals: readonly Refusal[], code: string, n: number): Promise<void> {
  const count = (): number => refusals.filter((r) => r.error.code === code).length;
  return new Promise((resolve) => {
    const check = (): void => {
      if (count() < n) return;
      server.off('refused', check);
      resolve();
    };
    server.on('refused', check);
    check();
  });
}

describe('pre-login exhaustion from one address (#14.6)', () => {
  it('300 upgraded connections that never log in: one address holds at most its share, and 6 admin logins from the same address all succeed', async () => {
    const { server, refusals } = await startServer();
    for (let i = 0; i < 300; i++) await idleConnection(server.port);
    expect(server.pendingLoginCount).toBeLessThanOrEqual(32);
    // The displaced ones were refused with E_TRANSPORT_CONNECTION_LIMIT.
    await refusalsReach(server, refusals, 'E_TRANSPORT_CONNECTION_LIMIT', 300 - 32);
    expect(await sixAdminCommands(server.port)).toEqual(new Array(6).fill('server1:true'));
  });

  it('while a flood from 127.0.0.1 goes on, 6 admin logins from 127.0.0.2 all succeed', async () => {
    const { server } = await startServer();
    let opened = 0;
    let underWay!: () => void;
    const fifty = new Promise<void>((r) => (underWay = r));
    const flooding = (async () => {
      for (let i = 0; i < 300; i++) {
        await idleConnection(server.port);
        if (++opened === 50) underWay();
      }
    })();
    await fifty;
    const admins = await sixAdminCommands(server.port, '127.0.0.2');
    await flooding;
    expect(admins).toEqual(new Array(6).fill('server1:true'));
    expect(server.pendingLoginCount).toBeLessThanOrEqual(32);
  });

  it('sockets that never start TLS count against a cap and are cut at the handshake deadline (E_TRANSPORT_HANDSHAKE_TIMEOUT)', async () => {
    const { server, refusals } = await startServer({ handshakeTimeoutMs: 1500 });
    const silent: Socket[] = [];
    for (let i = 0; i < 300; i++) {
      silent.push(await silentSocket(server.port));
      // At most 64 from one address are held at once; older ones make room.
      expect(server.handshakeCount).toBeLessThanOrEqual(64);
    }
    const admin = await adminLogin(server.port);
    expect(admin.authenticated).toBe(true);
    await Promise.all(silent.filter((s) => !s.closed).map((s) => once(s, 'close')));
    // Every one was refused: displaced by a newer one, or (the last ones held) cut at the deadline.
    const cut = (): number => refusals.filter((r) => r.error.code === 'E_TRANSPORT_HANDSHAKE_TIMEOUT' || r.error.code === 'E_TRANSPORT_CONNECTION_LIMIT').length;
    await new Promise<void>((resolve) => {
      const check = (): void => void (cut() >= 300 && (server.off('refused', check), resolve()));
      server.on('refused', check);
      check();
    });
    // The last 64 held reach the deadline, but for the one the admin's own connection displaced.
    expect(refusals.filter((r) => r.error.code === 'E_TRANSPORT_HANDSHAKE_TIMEOUT').length).toBeGreaterThanOrEqual(63);
    expect(server.handshakeCount).toBe(0);
  });
});

describe('one identity cannot exhaust the server (#14.5)', () => {
  it('a site kit that logs in again and again holds one session; admins are never refused with E_TRANSPORT_CONNECTION_LIMIT', async () => {
    const { server, auth } = await startServer({ maxConnections: 20 });
    const site = createClientAuth({ kit: siteKit, renewAt: false });
    const sessions: Array<Connection<Session>> = [];
    for (let i = 0; i < 40; i++) {
      const c = await dial<Session>({ ...clientOptionsFromKit(siteKit), targets: [{ host: '127.0.0.1', port: server.port }], authenticate: (x) => site.login(x) });
      cleanup.push(() => c.close());
      sessions.push(c);
    }
    expect(auth.sessions.sessionsOf('site-1')).toHaveLength(1);
    const closed = await Promise.all(sessions.slice(0, -1).map((c) => c.closed));
    expect(new Set(closed.map((i) => i.error?.code))).toEqual(new Set(['E_AUTH_SESSION_REPLACED']));
    const admin = await adminLogin(server.port);
    expect(admin.authenticated).toBe(true);
    expect(server.connectionCount).toBeLessThanOrEqual(3);
  });
});
