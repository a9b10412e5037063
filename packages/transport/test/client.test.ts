import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { PkiError, TransportError, type FlareError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient, dial, isFinalRefusal, listen, refusalOf, type Client, type Connection, type ServerEndpoint } from '../src/index.js';
import { testPki, within } from './certs.js';

const pki = testPki();
const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function echo(options: Partial<Parameters<typeof listen>[0]> & Pick<Parameters<typeof listen>[0], 'security'>): Promise<ServerEndpoint> {
  const server = await listen({ port: 0, host: '127.0.0.1', ...options });
  server.on('connection', (c) => c.on('message', (m) => void c.send(m.header, m.payload).catch(() => undefined)));
  cleanup.push(() => server.close());
  return server;
}

/** A minimal HTTP CONNECT proxy (RFC 9110 9.3.6) on loopback that records what it tunnelled. */
async function connectProxy(allow = true): Promise<{ port: number; tunnels: string[] }> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const proxy: Server = createHttpServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    if (!allow) return void client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    tunnels.push(req.url ?? '');
    const [host, port] = [req.url!.slice(0, req.url!.lastIndexOf(':')), Number(req.url!.slice(req.url!.lastIndexOf(':') + 1))];
    const upstream = netConnect({ host: host.replace(/^\[|\]$/g, ''), port }, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => proxy.close(r));
  });
  return { port: (proxy.address() as { port: number }).port, tunnels };
}

/** A TLS-terminating reverse proxy with its own certificate (the "custom_ca_cert" case): TLS in, clear out. */
async function terminatingProxy(backendPort: number): Promise<number> {
  const sockets = new Set<Socket>();
  const proxy = createTlsServer({ cert: pki.proxyCertPem, key: pki.proxyKeyPem }, (tls: TLSSocket) => {
    const upstream = netConnect({ host: '127.0.0.1', port: backendPort }, () => tls.pipe(upstream).pipe(tls));
    sockets.add(tls).add(upstream);
    upstream.on('error', () => tls.destroy());
    tls.on('error', () => upstream.destroy());
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => proxy.close(r));
  });
  return (proxy.address() as { port: number }).port;
}

async function roundTrip(conn: Connection<unknown>): Promise<void> {
  const reply = within(conn.receive());
  await conn.send({ probe: 1 }, new Uint8Array([7]));
  expect((await reply).header['probe']).toBe(1);
}

describe('proxies', () => {
  it('works through an HTTP CONNECT proxy with mtls end to end (the proxy sees only the tunnel)', async () => {
    const server = await echo({ security: 'mtls', tls: { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem } });
    const proxy = await connectProxy();
    const conn = await dial({
      security: 'mtls',
      targets: [{ host: 'localhost', port: server.port }],
      tls: { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem },
      proxy: { host: '127.0.0.1', port: proxy.port },
    });
    cleanup.push(() => conn.close());
    expect(proxy.tunnels).toEqual([`localhost:${server.port}`]);
    expect(conn.tls?.protocol).toBe('TLSv1.3');
    await roundTrip(conn as Connection<unknown>);
  });

  it('reports a proxy that refuses the tunnel (E_TRANSPORT_PROXY)', async () => {
    const proxy = await connectProxy(false);
    const error = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: 1 }], proxy: { host: '127.0.0.1', port: proxy.port } }).catch((e: unknown) => e);
    expect((error as FlareError).code).toBe('E_TRANSPORT_PROXY');
  });

  it('works behind a TLS-terminating reverse proxy: server clear, client tls trusting the proxy CA (custom_ca_cert)', async () => {
    const server = await echo({ security: 'clear' });
    const port = await terminatingProxy(server.port);
    const conn = await dial({ security: 'tls', targets: [{ host: '127.0.0.1', port }], tls: { caPem: pki.otherCaPem } });
    cleanup.push(() => conn.close());
    await roundTrip(conn as Connection<unknown>);
    // Without the proxy's CA the client refuses it.
    const error = await dial({ security: 'tls', targets: [{ host: '127.0.0.1', port }], tls: { caPem: pki.caPem } }).catch((e: unknown) => e);
    expect((error as FlareError).code).toBe('E_TRANSPORT_TLS');
  });
});

describe('createClient (reconnect)', () => {
  it('reconnects after the server drops the connection, with backoff from the injected random source', async () => {
    const server = await echo({ security: 'clear' });
    const client: Client = createClient({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }], backoff: { initialMs: 20, maxMs: 100 }, random: () => 0.5 });
    cleanup.push(() => client.stop());
    const first = await client.ready(5000);
    const retry = once(client as unknown as NodeJS.EventEmitter, 'retry');
    const reopened = new Promise<Connection>((resolve) => client.on('open', resolve));
    // Drop every server-side connection: the client must come back on its own.
    await server.close();
    const [info] = (await within(retry)) as [{ attempt: number; delayMs: number; error: FlareError }];
    expect(info.attempt).toBe(0);
    expect(info.delayMs).toBe(10);
    expect(info.error.code).toBe('E_TRANSPORT_SHUTDOWN');
    const again = await listen({ port: server.port, host: '127.0.0.1', security: 'clear' });
    cleanup.push(() => again.close());
    const second = await within(reopened, 60_000);
    expect(second).not.toBe(first);
    expect(client.connection).toBe(second);
  });

  it('gives up after maxAttempts', async () => {
    const dead = await listen({ security: 'clear', port: 0 });
    const port = dead.port;
    await dead.close();
    const client = createClient({ security: 'clear', targets: [{ host: '127.0.0.1', port }], maxAttempts: 3, backoff: { initialMs: 1, maxMs: 2 } });
    cleanup.push(() => client.stop());
    const retries: number[] = [];
    client.on('retry', (r) => retries.push(r.attempt));
    const error = await client.ready(5000).catch((e: unknown) => e);
    expect((error as FlareError).code).toBe('E_TRANSPORT_CONNECT');
    expect(retries).toEqual([0, 1]);
  });

  // A login refused with E_CERT_REVOKED: final only when the refusal provably comes from the server (#14.9).
  const revoking = (security: 'clear' | 'tls'): Promise<ServerEndpoint> =>
    echo({
      security,
      ...(security === 'tls' ? { tls: { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem } } : {}),
      authenticate: () => Promise.reject(new PkiError('E_CERT_REVOKED', 'revoked')),
    });
  const loginHook = async (c: Connection<undefined>): Promise<undefined> => {
    await c.send({ hello: 1 });
    await c.receive();
    return undefined;
  };
  async function outcome(options: Parameters<typeof createClient<undefined>>[0]): Promise<{ error: FlareError; retries: number; gaveUp: unknown[] }> {
    const client = createClient<undefined>({ maxAttempts: 3, backoff: { initialMs: 1, maxMs: 2 }, authenticate: loginHook, ...options });
    cleanup.push(() => client.stop());
    let retries = 0;
    client.on('retry', () => retries++);
    const gaveUp = new Promise<unknown[]>((resolve) => client.on('giveup', (...args) => resolve(args)));
    const error = (await client.ready(10_000).catch((e: unknown) => e)) as FlareError;
    return { error, retries, gaveUp: await within(gaveUp) };
  }

  it('retries a refusal that arrived in a forgeable close frame (clear connection): never final', async () => {
    const server = await revoking('clear');
    const { error, retries, gaveUp } = await outcome({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }] });
    expect(error.code).toBe('E_CERT_REVOKED');
    expect(refusalOf(error)).toEqual({ code: 'E_CERT_REVOKED', authenticated: false });
    expect(isFinalRefusal(error)).toBe(false);
    expect(retries).toBe(2);
    expect(gaveUp[1]).toEqual({ final: false });
  });

  it('stops at once on the same refusal from the pinned TLS server (authenticated), and retries it from another TLS peer', async () => {
    const server = await revoking('tls');
    const target = [{ host: '127.0.0.1', port: server.port }];
    const pinned = await outcome({ security: 'tls', targets: target, tls: { caPem: pki.caPem, peerName: 'server' } });
    expect(pinned.error.code).toBe('E_CERT_REVOKED');
    expect(refusalOf(pinned.error)).toEqual({ code: 'E_CERT_REVOKED', authenticated: true });
    expect([pinned.retries, pinned.gaveUp[1]]).toEqual([0, { final: true }]);
    // A verified chain is not enough: the TLS peer must be the server the kit names.
    const other = await outcome({ security: 'tls', targets: target, tls: { caPem: pki.caPem, peerName: 'server1' } });
    expect([other.error.code, refusalOf(other.error)?.authenticated, other.retries]).toEqual(['E_CERT_REVOKED', false, 2]);
  });

  it('a configuration error of this side is final; a lost connection or a local timeout is not a refusal', () => {
    expect(isFinalRefusal(new TransportError('E_TRANSPORT_CONFIG', 'no address'))).toBe(true);
    expect(isFinalRefusal(new TransportError('E_TRANSPORT_CLOSED', 'lost'))).toBe(false);
    expect(isFinalRefusal(new PkiError('E_CERT_REVOKED', 'a certificate this side checked'))).toBe(false);
    expect(refusalOf(new TransportError('E_TRANSPORT_CLOSED', 'lost'))).toBeUndefined();
  });
});

describe('TLS contexts are reused per (CA, certificate, key), never across them', () => {
  it('each dial presents its own certificate and trusts only its own CA, whatever was dialed before (E_TRANSPORT_TLS)', async () => {
    const peers: string[] = [];
    const server = await listen<string>({
      port: 0,
      host: '127.0.0.1',
      security: 'mtls',
      // Also trust the other CA at the TLS layer, so the test sees which certificate each client presents.
      tls: { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem + pki.otherCaPem },
      authenticate: async (c) => {
        const pem = c.tls?.peerCertificatePem ?? 'none';
        peers.push(pem);
        return pem;
      },
    });
    cleanup.push(() => server.close());
    const target = [{ host: '127.0.0.1', port: server.port }];
    const site = { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem };
    const intruder = { caPem: pki.caPem, certPem: pki.otherClientCertPem, privateKey: pki.otherClientKeyPem };
    for (const tls of [site, intruder, site, { ...site }]) {
      const conn = await dial({ security: 'mtls', targets: target, tls });
      await conn.close();
    }
    const der = (pem: string) => pem.replace(/-----[^-]+-----|\s/g, '');
    expect(peers.map(der)).toEqual([site, intruder, site, site].map((t) => der(t.certPem)));
    // A client that trusts only the other CA refuses this server, even right after a dial that trusted it.
    const error = await dial({ security: 'mtls', targets: target, tls: { ...site, caPem: pki.otherCaPem } }).catch((e: unknown) => e);
    expect((error as FlareError).code).toBe('E_TRANSPORT_TLS');
  });
});

/** A relay that records what the client sends; with `tls` it terminates TLS and records the plaintext. */
async function recordingRelay(backendPort: number, tls: boolean): Promise<{ port: number; upstream: Buffer[] }> {
  const upstream: Buffer[] = [];
  const sockets = new Set<Socket>();
  const onClient = (client: Socket): void => {
    const backend = netConnect({ host: '127.0.0.1', port: backendPort });
    sockets.add(client).add(backend);
    client.on('data', (d: Buffer) => {
      upstream.push(Buffer.from(d));
      backend.write(d);
    });
    backend.pipe(client);
    backend.on('error', () => client.destroy());
    client.on('error', () => backend.destroy());
  };
  const relay = tls ? createTlsServer({ cert: pki.proxyCertPem, key: pki.proxyKeyPem }, onClient) : createNetServer(onClient);
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => relay.close(r));
  });
  return { port: (relay.address() as { port: number }).port, upstream };
}

/** The masking keys of every client frame after the HTTP upgrade request (RFC 6455 5.2 framing). */
function maskingKeys(bytes: Buffer): string[] {
  let at = bytes.indexOf('\r\n\r\n') + 4;
  const keys: string[] = [];
  while (at + 2 <= bytes.length) {
    const masked = (bytes[at + 1]! & 0x80) !== 0;
    let len = bytes[at + 1]! & 0x7f;
    let head = 2;
    if (len === 126) [len, head] = [bytes.readUInt16BE(at + 2), 4];
    else if (len === 127) [len, head] = [Number(bytes.readBigUInt64BE(at + 2)), 10];
    keys.push(masked ? bytes.subarray(at + head, at + head + 4).toString('hex') : 'unmasked');
    at += head + (masked ? 4 : 0) + len;
  }
  return keys;
}

describe('client frame masking (RFC 6455 5.3)', () => {
  it('masks every frame of a clear connection with a fresh random key', async () => {
    const server = await echo({ security: 'clear' });
    const relay = await recordingRelay(server.port, false);
    const conn = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: relay.port }] });
    cleanup.push(() => conn.close());
    for (let i = 0; i < 3; i++) await roundTrip(conn as Connection<unknown>);
    const keys = maskingKeys(Buffer.concat(relay.upstream));
    expect(keys.length).toBeGreaterThanOrEqual(3);
    expect(keys).not.toContain('unmasked');
    expect(keys).not.toContain('00000000');
    expect(new Set(keys).size).toBe(keys.length);
  });
  it('inside TLS sets the MASK bit with the zero key (what a TLS-terminating proxy sees), and the server accepts it', async () => {
    const server = await echo({ security: 'clear' });
    const relay = await recordingRelay(server.port, true);
    const conn = await dial({ security: 'tls', targets: [{ host: '127.0.0.1', port: relay.port }], tls: { caPem: pki.otherCaPem } });
    cleanup.push(() => conn.close());
    for (let i = 0; i < 3; i++) await roundTrip(conn as Connection<unknown>);
    const keys = maskingKeys(Buffer.concat(relay.upstream));
    expect(keys.length).toBeGreaterThanOrEqual(3);
    expect(new Set(keys)).toEqual(new Set(['00000000']));
  });
});
