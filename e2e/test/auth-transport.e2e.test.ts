// @flare/auth composed with @flare/transport over real sockets, as the runtime will compose them: a server
// endpoint whose authenticate hook is the login, clients that log in with their kits, and on-path attackers.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientAuth, createServerAuth, type ServerAuth, type Session } from '@flare/auth';
import { encodeModelParts, FlareError, model, tensor } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { clientOptionsFromKit, dial, listen, serverOptionsFromKit, type Connection, type ServerEndpoint } from '@flare/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject } from './support.js';

const PROJECT = loopbackProject('e2eauth', { admin: true });

let workspace: string;
let serverKit: Kit;
let clientKit: Kit;
let adminKit: Kit;
const cleanup: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), 'flare-e2e-auth-'));
  const r = await provision(parseProject(PROJECT), { workspace });
  const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
  [serverKit, clientKit, adminKit] = await Promise.all([loadKit(dir('server1')), loadKit(dir('site-1')), loadKit(dir('admin@nvidia.com'))]);
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
afterAll(() => rm(workspace, { recursive: true, force: true }));

const withSecurity = (kit: Kit, security: 'clear' | 'tls' | 'mtls'): Kit => ({ ...kit, connectionSecurity: security });

async function startServer(security: 'clear' | 'tls' | 'mtls', opts: Parameters<typeof createServerAuth>[0] extends infer O ? Partial<O> : never = {}, limits = {}) {
  const auth: ServerAuth = createServerAuth({ kit: serverKit, ...opts });
  const server: ServerEndpoint<Session> = await listen<Session>({
    ...serverOptionsFromKit(withSecurity(serverKit, security)),
    host: '127.0.0.1',
    port: 0,
    limits,
    authenticate: (c) => auth.accept(c),
  });
  server.on('connection', (c) => {
    c.on('message', (m) => void c.send({ ...m.header, from: c.auth.peer.name, sha: createHash('sha256').update(m.payload).digest('hex') }).catch(() => undefined));
  });
  cleanup.push(() => server.close());
  return { server, auth };
}

async function login(kit: Kit, security: 'clear' | 'tls' | 'mtls', port: number, extra: Partial<Parameters<typeof dial>[0]> = {}): Promise<Connection<Session>> {
  const auth = createClientAuth({ kit, renewAt: false });
  const conn = await dial<Session>({
    ...clientOptionsFromKit(withSecurity(kit, security)),
    targets: [{ host: '127.0.0.1', port }],
    authenticate: (c) => auth.login(c),
    ...extra,
  } as Parameters<typeof dial<Session>>[0]);
  cleanup.push(() => conn.close());
  return conn;
}

const code = (e: unknown): string | undefined => (e instanceof FlareError ? e.code : undefined);

describe('login over real connections', () => {
  for (const security of ['mtls', 'tls', 'clear'] as const) {
    it(`${security}: identity from the handshake, channel binding ${security === 'clear' ? 'off' : 'on'}, authenticated round trip`, async () => {
      const { server } = await startServer(security);
      const seen = once(server as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection<Session>]>;
      const conn = await login(clientKit, security, server.port);
      const [serverSide] = await seen;
      expect(serverSide.auth.peer).toEqual({ name: 'site-1', org: 'nvidia', type: 'client' });
      expect(conn.auth.peer.name).toBe('server1');
      expect(conn.auth.channelBound).toBe(security !== 'clear');
      expect(serverSide.auth.channelBound).toBe(security !== 'clear');
      expect(Buffer.from(conn.auth.exportKeyingMaterial('nonce', 64)).equals(Buffer.from(serverSide.auth.exportKeyingMaterial('nonce', 64)))).toBe(true);
      const reply = conn.receive();
      await conn.send({ type: 'hello', from: 'someone-else' }, new Uint8Array([1, 2, 3]));
      // The server answers with the authenticated name, whatever the message claimed.
      expect((await reply).header['from']).toBe('site-1');
    });
  }

  it('streams a 64 MB model over mtls + auth, delivered intact', async () => {
    const { server } = await startServer('mtls');
    const conn = await login(clientKit, 'mtls', server.port);
    const w = new Float32Array(16 * 2 ** 20);
    for (let i = 0; i < w.length; i++) w[i] = i % 1009;
    const parts = encodeModelParts(model([['w', tensor(w, [16, 2 ** 20])]]));
    const hash = createHash('sha256');
    for (const p of parts.parts) hash.update(p);
    const reply = conn.receive();
    await conn.send({ type: 'update' }, parts);
    expect((await reply).header['sha']).toBe(hash.digest('hex'));
  });

  it('renews the session while a large message is in flight, and both directions keep flowing', async () => {
    const { server } = await startServer('mtls');
    const auth = createClientAuth({ kit: clientKit, renewAt: false });
    const conn = await dial<Session>({ ...clientOptionsFromKit(clientKit), targets: [{ host: '127.0.0.1', port: server.port }], authenticate: (c) => auth.login(c) });
    cleanup.push(() => conn.close());
    const replies: string[] = [];
    const done = new Promise<void>((resolve) => conn.on('message', (m) => (replies.push(String(m.header['n'])), replies.length === 3 && resolve())));
    const big = conn.send({ n: 1 }, new Uint8Array(8 * 2 ** 20));
    const renewal = conn.auth.renew();
    await Promise.all([big, renewal, conn.send({ n: 2 }), conn.send({ n: 3 })]);
    await done;
    expect(replies).toEqual(['1', '2', '3']);
    expect(conn.auth.epoch).toBe(1);
  });

  it('admin login with site credentials passed to the authorizeLogin hook; a refusal reaches the client with its code', async () => {
    const calls: unknown[] = [];
    const { server } = await startServer('mtls', {
      authorizeLogin: (peer, cred) => {
        calls.push({ peer: peer.name, role: peer.role, cred });
        if (cred?.['oidc'] !== 'good-token') throw new (class extends FlareError {})('E_AUTH_REFUSED', 'token rejected by the site IdP');
      },
    });
    const auth = (token: string) => createClientAuth({ kit: adminKit, renewAt: false, credentials: () => ({ oidc: token }) });
    const ok = await dial<Session>({ ...clientOptionsFromKit(adminKit), targets: [{ host: '127.0.0.1', port: server.port }], authenticate: (c) => auth('good-token').login(c) });
    cleanup.push(() => ok.close());
    const refused = await dial<Session>({ ...clientOptionsFromKit(adminKit), targets: [{ host: '127.0.0.1', port: server.port }], authenticate: (c) => auth('bad').login(c) }).catch((e: unknown) => e);
    expect(code(refused)).toBe('E_AUTH_REFUSED');
    expect(calls).toEqual([
      { peer: 'admin@nvidia.com', role: 'project_admin', cred: { oidc: 'good-token' } },
      { peer: 'admin@nvidia.com', role: 'project_admin', cred: { oidc: 'bad' } },
    ]);
  });
});

describe('attacks over real connections', () => {
  it('a session id reused on another connection is refused (E_AUTH_SESSION_BINDING)', async () => {
    const { server } = await startServer('mtls');
    const a = await login(clientKit, 'mtls', server.port);
    // Another participant (one site holds one session: a second login of site-1 would replace A).
    const b = await login(adminKit, 'mtls', server.port);
    // Record A's next trailer, then make B send it (an attacker replaying A's session on its own connection).
    let stolen: ReturnType<Session['seal']> | undefined;
    const original = a.auth;
    a.setGuard({
      seal: (h, n, sha) => {
        const trailer = original.seal(h, n, sha);
        stolen = trailer;
        return trailer;
      },
      open: (h, n, sha, t) => original.open(h, n, sha, t),
    });
    await a.send({ type: 'result' });
    b.setGuard({ seal: () => stolen!, open: () => true });
    await b.send({ type: 'result' });
    expect((await b.closed).error?.code).toBe('E_AUTH_SESSION_BINDING');
  });

  it('an on-path attacker flipping one payload byte is caught (E_AUTH_MAC)', async () => {
    const { server } = await startServer('clear');
    const relay = await flippingRelay(server.port);
    const conn = await login(clientKit, 'clear', relay);
    await conn.send({ type: 'result' }, new Uint8Array(100_000));
    expect((await conn.closed).error?.code).toBe('E_AUTH_MAC');
  });

  it('a socket that never logs in is closed (E_TRANSPORT_LOGIN_TIMEOUT); an oversized frame before login is cut (E_TRANSPORT_PRELOGIN_LIMIT)', async () => {
    const { server } = await startServer('clear', {}, { loginTimeoutMs: 300 });
    // Plain transport connections that skip the login (no authenticate hook on the client side).
    const idle = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }] });
    expect((await idle.closed).error?.code).toBe('E_TRANSPORT_LOGIN_TIMEOUT');
    const flood = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }] });
    await flood.send({ type: 'flood' }, new Uint8Array(1024 * 1024)).catch(() => undefined);
    expect((await flood.closed).error?.code).toBe('E_TRANSPORT_PRELOGIN_LIMIT');
  });
});

/** A TCP relay that flips one byte deep inside the first large client-to-server write (a 100 KB frame). */
async function flippingRelay(backend: number): Promise<number> {
  const sockets = new Set<Socket>();
  const relay: Server = createNetServer((client) => {
    const upstream = netConnect({ host: '127.0.0.1', port: backend });
    sockets.add(client).add(upstream);
    let flipped = false;
    let seen = 0;
    client.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (!flipped && seen > 60_000) {
        // Client frames are masked (RFC 6455 5.3): flipping a masked byte flips the same bit of the payload.
        chunk[chunk.length - 10] = chunk[chunk.length - 10]! ^ 0x01;
        flipped = true;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => relay.close(r));
  });
  return (relay.address() as { port: number }).port;
}
