// A man in the middle of clear traffic (or a compromised TLS-terminating proxy) against sites that reconnect:
// close frames are not authenticated, so a forged refusal must never stop a site (#14.9), while a refusal the
// server sealed in its session does; tampering after login is reported on both sides with the peer named (#14.15).
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientAuth, createServerAuth, type MessageRefused, type ServerAuth, type Session } from '@flare/auth';
import type { FlareError } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { clientOptionsFromKit, createClient, listen, refusalOf, serverOptionsFromKit, type Client, type Connection, type ServerEndpoint } from '@flare/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject } from './support.js';

let workspace: string;
let serverKit: Kit;
let siteKit: Kit;
const cleanup: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), 'flare-e2e-mitm-'));
  const r = await provision(parseProject(loopbackProject('e2emitm')), { workspace });
  const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
  [serverKit, siteKit] = await Promise.all([loadKit(dir('server1')), loadKit(dir('site-1'))]);
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
afterAll(() => rm(workspace, { recursive: true, force: true }));

const clear = (kit: Kit): Kit => ({ ...kit, connectionSecurity: 'clear' });

async function startServer(): Promise<{ server: ServerEndpoint<Session>; auth: ServerAuth; events: MessageRefused[] }> {
  const auth = createServerAuth({ kit: serverKit });
  const events: MessageRefused[] = [];
  auth.on('refused', (e) => events.push(e));
  const server = await listen<Session>({ ...serverOptionsFromKit(clear(serverKit)), host: '127.0.0.1', port: 0, authenticate: (c) => auth.accept(c) });
  server.on('connection', (c) => c.on('message', (m) => void c.send({ echo: m.header['n'] ?? null }).catch(() => undefined)));
  cleanup.push(() => server.close());
  return { server, auth, events };
}

type Mode = { kind: 'pass' } | { kind: 'inject-close'; code: string; times: number } | { kind: 'flip-next-large' } | { kind: 'replay-next' };

/**
 * A TCP relay between the site and the server. `pass` forwards; `inject-close` lets the WebSocket upgrade
 * through, then writes a forged close frame (4000 + code) to the site and cuts both sides, `times` times;
 * `flip-next-large` flips one byte near the end of the next client write of 10 KB or more; `replay-next` sends
 * the next client write twice. `cut()` drops every connection (a network failure); `toSite` writes bytes of
 * its own into the live connection.
 */
async function relay(backend: number): Promise<{ port: number; mode: Mode; injected: number; cut(): void; toSite(bytes: Uint8Array): void }> {
  const sockets = new Set<Socket>();
  let latest: Socket | undefined;
  const state = {
    port: 0,
    mode: { kind: 'pass' } as Mode,
    injected: 0,
    cut: () => sockets.forEach((s) => s.destroy()),
    toSite: (bytes: Uint8Array) => void latest?.write(bytes),
  };
  const server: Server = createNetServer((site) => {
    latest = site;
    const upstream = netConnect({ host: '127.0.0.1', port: backend });
    sockets.add(site).add(upstream);
    const drop = (): void => {
      site.destroy();
      upstream.destroy();
    };
    site.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    let upgraded = false;
    upstream.on('data', (chunk: Buffer) => {
      site.write(chunk);
      const m = state.mode;
      if (!upgraded && chunk.includes('\r\n\r\n') && m.kind === 'inject-close' && state.injected < m.times) {
        upgraded = true;
        state.injected++;
        site.end(forgedClose(m.code));
        upstream.destroy();
      }
    });
    site.on('data', (chunk: Buffer) => {
      const m = state.mode;
      if (m.kind === 'flip-next-large' && chunk.length >= 10_000) {
        // Client frames are masked (RFC 6455 5.3): flipping a masked byte flips the same bit of the payload.
        chunk[chunk.length - 10] = chunk[chunk.length - 10]! ^ 0x01;
        state.mode = { kind: 'pass' };
      } else if (m.kind === 'replay-next') {
        upstream.write(chunk);
        state.mode = { kind: 'pass' };
      }
      upstream.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as { port: number }).port;
  cleanup.push(() => {
    state.cut();
    return new Promise((r) => server.close(r));
  });
  return state;
}

/** RFC 6455 5.5.1: an unmasked close frame as the server would send it, code 4000 and a FlareError code. */
function forgedClose(code: string): Buffer {
  const reason = Buffer.from(code);
  return Buffer.concat([Buffer.from([0x88, 2 + reason.length, 4000 >> 8, 4000 & 0xff]), reason]);
}

function site(port: number): { client: Client<Session>; events: MessageRefused[]; retries: FlareError[] } {
  const auth = createClientAuth({ kit: clear(siteKit), renewAt: false });
  const events: MessageRefused[] = [];
  auth.on('refused', (e) => events.push(e));
  const client = createClient<Session>({
    ...clientOptionsFromKit(clear(siteKit)),
    targets: [{ host: '127.0.0.1', port }],
    backoff: { initialMs: 10, maxMs: 50 },
    authenticate: (c) => auth.login(c),
  });
  const retries: FlareError[] = [];
  client.on('retry', (r) => retries.push(r.error));
  cleanup.push(() => client.stop());
  return { client, events, retries };
}

const nextOpen = (client: Client<Session>): Promise<Connection<Session>> => new Promise((resolve) => client.once('open', resolve));
const giveUp = (client: Client<Session>): Promise<[FlareError, { final: boolean }]> => new Promise((resolve) => client.on('giveup', (e, why) => resolve([e, why])));

describe('a forged close frame cannot stop a site (#14.9)', () => {
  it('after a cut, a forged 4000 E_AUTH_SESSION_REVOKED on each of three reconnects is retried, and the site comes back', async () => {
    const { server } = await startServer();
    const path = await relay(server.port);
    const { client, retries } = site(path.port);
    const first = await client.ready(20_000);
    const back = nextOpen(client);
    path.mode = { kind: 'inject-close', code: 'E_AUTH_SESSION_REVOKED', times: 3 };
    path.cut();
    const second = await back;
    expect(second).not.toBe(first);
    expect(path.injected).toBe(3);
    const forged = retries.filter((e) => e.code === 'E_AUTH_SESSION_REVOKED');
    expect(forged).toHaveLength(3);
    expect(forged.map((e) => refusalOf(e)?.authenticated)).toEqual([false, false, false]);
    // The new session works.
    const reply = second.receive();
    await second.send({ n: 7 });
    expect((await reply).header['echo']).toBe(7);
  });

  it('a forged close after login (inside a live session) is not final either', async () => {
    const { server } = await startServer();
    const path = await relay(server.port);
    const { client, retries } = site(path.port);
    const first = await client.ready(20_000);
    const back = nextOpen(client);
    path.toSite(forgedClose('E_CERT_REVOKED'));
    const info = await first.closed;
    expect([info.by, info.error?.code, info.authenticated]).toEqual(['remote', 'E_CERT_REVOKED', false]);
    await back;
    expect(retries.map((e) => [e.code, refusalOf(e)?.authenticated])).toEqual([['E_CERT_REVOKED', false]]);
  });

  it('the server revoking the site inside its session is final: the site gives up at once (final: true)', async () => {
    const { server, auth } = await startServer();
    const path = await relay(server.port);
    const { client, retries } = site(path.port);
    await client.ready(20_000);
    const gaveUp = giveUp(client);
    expect(auth.sessions.revokeParticipant('site-1')).toBe(1);
    const [error, why] = await gaveUp;
    expect([error.code, refusalOf(error)?.authenticated, why.final]).toEqual(['E_AUTH_SESSION_REVOKED', true, true]);
    expect(retries).toEqual([]);
  });
});

describe('tampering after login is reported on both sides, with the peer named (#14.15)', () => {
  it('a flipped payload byte: the server refuses (E_AUTH_MAC, by local, peer site-1); the site hears it (by peer, peer server1)', async () => {
    const { server, events: serverEvents } = await startServer();
    const path = await relay(server.port);
    const { client, events: siteEvents, retries } = site(path.port);
    const conn = await client.ready(20_000);
    path.mode = { kind: 'flip-next-large' };
    await conn.send({ n: 1 }, new Uint8Array(50_000)).catch(() => undefined);
    const info = await conn.closed;
    expect([info.error?.code, info.authenticated]).toEqual(['E_AUTH_MAC', true]);
    expect(serverEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_MAC', 'local', 'site-1']]);
    expect(siteEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_MAC', 'peer', 'server1']]);
    // Tampering is not a reason to stop: the site reconnects.
    await nextOpen(client);
    expect(retries.map((e) => e.code)).toContain('E_AUTH_MAC');
  });

  it('a replayed message: E_AUTH_REPLAY on the server (by local) and on the site (by peer)', async () => {
    const { server, events: serverEvents } = await startServer();
    const path = await relay(server.port);
    const { client, events: siteEvents } = site(path.port);
    const conn = await client.ready(20_000);
    path.mode = { kind: 'replay-next' };
    await conn.send({ n: 2 }, new Uint8Array(100)).catch(() => undefined);
    const info = await conn.closed;
    expect(info.error?.code).toBe('E_AUTH_REPLAY');
    expect(serverEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_REPLAY', 'local', 'site-1']]);
    expect(siteEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_REPLAY', 'peer', 'server1']]);
  });
});
