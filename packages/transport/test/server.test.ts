import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { decodeModel, encodeFrame, encodeModelParts, isFlareError, model, tensor, TransportError, type FlareError } from '@flare/core';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { dial, listen, type ClientOptions, type Connection, type Message, type ServerEndpoint, type ServerOptions } from '../src/index.js';
import { testPki, within } from './certs.js';

const pki = testPki();
const servers: ServerEndpoint<unknown>[] = [];
const conns: Connection<unknown>[] = [];

afterEach(async () => {
  await Promise.all(conns.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function echoServer<A>(options: Partial<ServerOptions<A>> & Pick<ServerOptions<A>, 'security'>): Promise<ServerEndpoint<A>> {
  const server = await listen<A>({ port: 0, host: '127.0.0.1', ...options });
  servers.push(server as ServerEndpoint<unknown>);
  server.on('connection', (conn) => {
    conns.push(conn as Connection<unknown>);
    conn.on('message', (m) => void conn.send({ ...m.header, echoed: true }, m.payload).catch(() => undefined));
  });
  return server;
}

const serverTls = { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem };
const clientTls = { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem };

async function client(port: number, extra: Partial<ClientOptions<undefined>> = {}, security: 'clear' | 'tls' | 'mtls' = 'clear'): Promise<Connection<undefined>> {
  const conn = await dial<undefined>({ security, targets: [{ host: '127.0.0.1', port }], ...(security === 'clear' ? {} : { tls: clientTls }), ...extra });
  conns.push(conn as Connection<unknown>);
  return conn;
}

describe('listen / dial', () => {
  it('echoes a message over a clear connection, header and payload intact', async () => {
    const server = await echoServer({ security: 'clear' });
    const conn = await client(server.port);
    const reply = within(conn.receive());
    await conn.send({ type: 'ping', n: 1 }, new Uint8Array([1, 2, 3]));
    const m = await reply;
    expect({ ...m.header }).toEqual({ type: 'ping', n: 1, echoed: true });
    expect([...m.payload]).toEqual([1, 2, 3]);
  });

  it('negotiates TLS 1.3 with tls and with mtls, and the server sees the client certificate with mtls', async () => {
    for (const security of ['tls', 'mtls'] as const) {
      const server = await echoServer({ security, tls: serverTls });
      const seen = once(server as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection]>;
      const conn = await client(server.port, {}, security);
      expect(conn.tls?.protocol).toBe('TLSv1.3');
      const [serverSide] = await within(seen);
      expect(serverSide.tls?.peerCertificatePem !== undefined).toBe(security === 'mtls');
      const reply = within(conn.receive());
      await conn.send({ type: 'x' });
      expect((await reply).header['echoed']).toBe(true);
    }
  });

  it('refuses an mtls client without a certificate at the TLS handshake (E_TRANSPORT_TLS)', async () => {
    const server = await echoServer({ security: 'mtls', tls: serverTls });
    const refused = once(server as unknown as NodeJS.EventEmitter, 'refused');
    await expectFlareCodeAsync(dial({ security: 'tls', targets: [{ host: '127.0.0.1', port: server.port }], tls: { caPem: pki.caPem } }), 'E_TRANSPORT_TLS');
    const [refusal] = (await within(refused)) as [{ error: FlareError }];
    expect(refusal.error.code).toBe('E_TRANSPORT_TLS');
  });

  it('refuses an mtls client whose certificate comes from another CA (E_TRANSPORT_TLS)', async () => {
    const server = await echoServer({ security: 'mtls', tls: serverTls });
    await expectFlareCodeAsync(
      dial({ security: 'mtls', targets: [{ host: '127.0.0.1', port: server.port }], tls: { caPem: pki.caPem, certPem: pki.otherClientCertPem, privateKey: pki.otherClientKeyPem } }),
      'E_TRANSPORT_TLS',
    );
  });

  it('refuses a server whose certificate the client CA did not issue (E_TRANSPORT_TLS)', async () => {
    const server = await echoServer({ security: 'tls', tls: serverTls });
    await expectFlareCodeAsync(dial({ security: 'tls', targets: [{ host: '127.0.0.1', port: server.port }], tls: { caPem: pki.otherCaPem } }), 'E_TRANSPORT_TLS');
  });

  it('refuses tls without a certificate in its configuration (E_TRANSPORT_CONFIG)', async () => {
    await expectFlareCodeAsync(listen({ security: 'tls', port: 0 }), 'E_TRANSPORT_CONFIG');
    await expectFlareCodeAsync(dial({ security: 'mtls', targets: [{ host: '127.0.0.1', port: 1 }], tls: { caPem: pki.caPem } }), 'E_TRANSPORT_CONFIG');
    await expectFlareCodeAsync(dial({ security: 'clear', targets: [] }), 'E_TRANSPORT_CONFIG');
  });

  it('connects over IPv6 and by DNS name, and falls through a dead address to the next one', async () => {
    const server = await echoServer({ security: 'tls', tls: serverTls, host: ['127.0.0.1', '::1'] });
    const v6 = await dial({ security: 'tls', targets: [{ host: '::1', port: server.port }], tls: { caPem: pki.caPem } });
    conns.push(v6 as Connection<unknown>);
    expect(v6.remote.address).toBe('::1');
    const dead = await listen({ security: 'clear', port: 0 });
    const deadPort = dead.port;
    await dead.close();
    const named = await dial({ security: 'tls', targets: [{ host: '127.0.0.1', port: deadPort }, { host: 'localhost', port: server.port }], tls: { caPem: pki.caPem } });
    conns.push(named as Connection<unknown>);
    expect(named.remote.port).toBe(server.port);
  });

  it('reports E_TRANSPORT_CONNECT when no address answers', async () => {
    const dead = await listen({ security: 'clear', port: 0 });
    const port = dead.port;
    await dead.close();
    await expectFlareCodeAsync(dial({ security: 'clear', targets: [{ host: '127.0.0.1', port }] }), 'E_TRANSPORT_CONNECT');
  });
});

describe('streaming', () => {
  it('streams a 20 MB model in 1 MiB chunks and the receiver decodes it bit for bit', async () => {
    const server = await echoServer({ security: 'mtls', tls: serverTls });
    const conn = await client(server.port, {}, 'mtls');
    const w = new Float32Array(5 * 2 ** 20);
    for (let i = 0; i < w.length; i++) w[i] = Math.sin(i);
    const m = model([['w', tensor(w, [5, 2 ** 20])], ['b', tensor(new Float32Array([1, 2, 3]), [3])]]);
    const parts = encodeModelParts(m);
    const reply = within(conn.receive(), 60_000);
    await conn.send({ type: 'model' }, parts);
    const echoed = await reply;
    expect(echoed.payload.length).toBe(parts.byteLength);
    const back = decodeModel(echoed.payload);
    const digest = (a: Float32Array): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
    expect(digest(back.params.get('w')!.data as Float32Array)).toBe(digest(w));
  });

  it('delivers messages in order, small ones after a streamed one', async () => {
    const server = await echoServer({ security: 'clear', limits: { chunkBytes: 1024 } });
    const conn = await client(server.port, { limits: { chunkBytes: 1024 } });
    const got: Message[] = [];
    const all = new Promise<void>((resolve) => conn.on('message', (m) => (got.push(m), got.length === 3 && resolve())));
    const big = new Uint8Array(10_000).map((_, i) => i & 0xff);
    await Promise.all([conn.send({ i: 0 }, big), conn.send({ i: 1 }), conn.send({ i: 2 }, new Uint8Array([9]))]);
    await within(all);
    expect(got.map((m) => m.header['i'])).toEqual([0, 1, 2]);
    expect(createHash('sha256').update(got[0]!.payload).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  });

  it('refuses a message above the receiver limit (E_TRANSPORT_MESSAGE_TOO_LARGE) and the sender checks its own', async () => {
    const server = await echoServer({ security: 'clear', limits: { maxMessageBytes: 4096, chunkBytes: 1024 } });
    const conn = await client(server.port, { limits: { chunkBytes: 1024 } });
    await conn.send({}, new Uint8Array(5000));
    const info = await within(conn.closed);
    expect(info.error?.code).toBe('E_TRANSPORT_MESSAGE_TOO_LARGE');
    const small = await client(server.port, { limits: { maxMessageBytes: 100 } });
    await expectFlareCodeAsync(small.send({}, new Uint8Array(101)), 'E_TRANSPORT_MESSAGE_TOO_LARGE');
  });
});

describe('before login', () => {
  const neverLogsIn = (): Promise<never> => new Promise(() => undefined);

  it('closes a socket that never logs in (E_TRANSPORT_LOGIN_TIMEOUT)', async () => {
    const server = await echoServer({ security: 'clear', authenticate: neverLogsIn, limits: { loginTimeoutMs: 150 } });
    const refused = once(server as unknown as NodeJS.EventEmitter, 'refused');
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`);
    const [code, reason] = (await within(once(ws, 'close'))) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4000, 'E_TRANSPORT_LOGIN_TIMEOUT']);
    expect(((await within(refused))[0] as { error: FlareError }).error.code).toBe('E_TRANSPORT_LOGIN_TIMEOUT');
    expect(server.connectionCount).toBe(0);
  });

  it('cuts an oversized frame before login (E_TRANSPORT_PRELOGIN_LIMIT) without reading it whole', async () => {
    const server = await echoServer({ security: 'clear', authenticate: neverLogsIn });
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`);
    await within(once(ws, 'open'));
    ws.send(new Uint8Array(512 * 1024));
    const [code, reason] = (await within(once(ws, 'close'))) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4000, 'E_TRANSPORT_PRELOGIN_LIMIT']);
  });

  it('refuses a frame whose declared size exceeds the pre-login limit even when it arrives in pieces', async () => {
    const server = await echoServer({ security: 'clear', authenticate: neverLogsIn, limits: { preLoginMaxBytes: 1024 } });
    const conn = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }] });
    conns.push(conn as Connection<unknown>);
    await conn.send({ hello: 'x'.repeat(2000) }).catch(() => undefined);
    expect((await within(conn.closed)).error?.code).toBe('E_TRANSPORT_PRELOGIN_LIMIT');
  });

  it('refuses connections over the limit (E_TRANSPORT_CONNECTION_LIMIT)', async () => {
    const server = await echoServer({ security: 'clear', limits: { maxConnections: 1 } });
    await client(server.port);
    await expectFlareCodeAsync(dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: server.port }] }), 'E_TRANSPORT_CONNECTION_LIMIT');
  });

  it('closes with the code of a refused login, which the client reads back as the same FlareError', async () => {
    const server = await echoServer({
      security: 'clear',
      authenticate: async (c) => {
        await c.receive();
        throw new TransportError('E_TRANSPORT_PROTOCOL', 'no');
      },
    });
    await expectFlareCodeAsync(
      dial({
        security: 'clear',
        targets: [{ host: '127.0.0.1', port: server.port }],
        authenticate: async (c) => {
          await c.send({ hello: 1 });
          await c.receive();
          return undefined;
        },
      }),
      'E_TRANSPORT_PROTOCOL',
    );
  });
});

describe('liveness and closing', () => {
  it('drops a peer that stops answering pings (E_TRANSPORT_IDLE)', async () => {
    const server = await echoServer({ security: 'clear', limits: { heartbeatMs: 30, idleTimeoutMs: 150 } });
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`, { autoPong: false });
    const [code, reason] = (await within(once(ws, 'close'))) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4000, 'E_TRANSPORT_IDLE']);
  });

  it('keeps a quiet but healthy connection open across many heartbeats', async () => {
    // Idle timeout 25x the heartbeat: pongs keep the connection alive through 6 s of silence, more than twice the
    // idle timeout. The margin is an event-loop stall of 2.5 s (a busy machine), not the machine's speed.
    const limits = { heartbeatMs: 100, idleTimeoutMs: 2500 };
    const server = await echoServer({ security: 'clear', limits });
    const conn = await client(server.port, { limits });
    let closed = false;
    void conn.closed.then(() => (closed = true));
    const beats = new Promise<void>((resolve) => {
      let n = 0;
      const t = setInterval(() => {
        if (++n >= 60 || closed) {
          clearInterval(t);
          resolve();
        }
      }, 100);
    });
    await within(beats);
    expect(closed).toBe(false);
    const reply = within(conn.receive());
    await conn.send({ still: 'here' });
    expect((await reply).header['echoed']).toBe(true);
  });

  it('refuses a text frame and a chunk outside a message (E_TRANSPORT_PROTOCOL)', async () => {
    const server = await echoServer({ security: 'clear' });
    for (const bad of ['text', new Uint8Array([0x46, 0x4c, 0x54, 0x53, 1, 9, 0, 0, 0, ...Buffer.from('{"t":"c"}')])]) {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`);
      await within(once(ws, 'open'));
      ws.send(bad);
      const [code, reason] = (await within(once(ws, 'close'))) as [number, Buffer];
      expect([code, reason.toString()]).toEqual([4000, 'E_TRANSPORT_PROTOCOL']);
    }
  });

  it('refuses a chunk larger than the receiver chunk size inside a streamed message (E_CODEC_TOO_LARGE)', async () => {
    const server = await echoServer({ security: 'clear', limits: { chunkBytes: 1024 } });
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`);
    await within(once(ws, 'open'));
    ws.send(encodeFrame({ t: 'm', h: {}, n: 5000 }));
    ws.send(encodeFrame({ t: 'c' }, new Uint8Array(1025)));
    const [code, reason] = (await within(once(ws, 'close'))) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4000, 'E_CODEC_TOO_LARGE']);
  });

  it('closes gracefully with a reason code the peer reads back, and tells clients when the server shuts down', async () => {
    const server = await echoServer({ security: 'clear' });
    const seen = once(server as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection]>;
    const conn = await client(server.port);
    const [serverSide] = await within(seen);
    await serverSide.close(new TransportError('E_TRANSPORT_PROTOCOL', 'bye'));
    const info = await within(conn.closed);
    expect(info.by).toBe('remote');
    expect(isFlareError(info.error, 'E_TRANSPORT_PROTOCOL')).toBe(true);
    expect(info.error).toBeInstanceOf(TransportError);
    const other = await client(server.port);
    await server.close();
    servers.splice(servers.indexOf(server as ServerEndpoint<unknown>), 1);
    expect((await within(other.closed)).error?.code).toBe('E_TRANSPORT_SHUTDOWN');
    await expectFlareCodeAsync(other.send({}), 'E_TRANSPORT_SHUTDOWN');
  });

  it('a normal close carries no error', async () => {
    const server = await echoServer({ security: 'clear' });
    const conn = await client(server.port);
    const info = await conn.close();
    expect(info).toEqual({ code: 1000, reason: '', by: 'local', authenticated: false });
  });
});
