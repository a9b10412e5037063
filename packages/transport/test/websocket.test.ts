// The opening handshake (RFC 6455 section 4), and interoperability with an independent implementation (the ws
// package) in both directions.
import { once } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { encodeFrame } from '@flare/core';
import { dial, listen, type Connection, type ServerEndpoint } from '../src/index.js';
import { acceptKey, upgradeKey } from '../src/websocket.js';
import { within } from './certs.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('opening handshake (RFC 6455 4)', () => {
  it('RFC 6455 1.3: the accept value of "dGhlIHNhbXBsZSBub25jZQ=="', () => {
    expect(acceptKey('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('checks the client request: GET, Upgrade, Connection, version 13, a 16-byte key', () => {
    const good = { upgrade: 'websocket', connection: 'keep-alive, Upgrade', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    expect(upgradeKey('GET', good)).toEqual({ key: 'dGhlIHNhbXBsZSBub25jZQ==' });
    expect(upgradeKey('POST', good)).toHaveProperty('error');
    expect(upgradeKey('GET', { ...good, upgrade: 'h2c' })).toHaveProperty('error');
    expect(upgradeKey('GET', { ...good, connection: 'keep-alive' })).toHaveProperty('error');
    expect(upgradeKey('GET', { ...good, 'sec-websocket-version': '8' })).toHaveProperty('error');
    expect(upgradeKey('GET', { ...good, 'sec-websocket-key': 'c2hvcnQ=' })).toHaveProperty('error');
  });

  it('a request that is not a WebSocket upgrade gets 400 and a refused event (E_TRANSPORT_PROTOCOL)', async () => {
    const server = await listen({ security: 'clear', port: 0 });
    cleanup.push(() => server.close());
    const refused = once(server as unknown as NodeJS.EventEmitter, 'refused');
    const req = request({ port: server.port, host: '127.0.0.1', path: '/flare', headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13' } });
    req.end();
    const [res] = (await within(Promise.race([once(req, 'response'), once(req, 'upgrade')]))) as [IncomingMessage];
    expect(res.statusCode).toBe(400);
    expect(((await within(refused))[0] as { error: { code: string } }).error.code).toBe('E_TRANSPORT_PROTOCOL');
  });

  it('a client refuses a server that answers with the wrong accept key (E_TRANSPORT_CONNECT)', async () => {
    const http = createServer();
    http.on('upgrade', (_req, socket: Socket) => socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n'));
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    cleanup.push(() => new Promise((r) => http.close(r)));
    const error = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: (http.address() as { port: number }).port }] }).catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe('E_TRANSPORT_CONNECT');
  });
});

describe('interoperability with the ws package', () => {
  it('our client talks to a ws server (masked frames, binary, close with a code)', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', path: '/flare' });
    await once(wss, 'listening');
    cleanup.push(() => new Promise((r) => wss.close(r)));
    // The ws server echoes each binary message back: our client must read ws's framing of our own frames.
    wss.on('connection', (ws) => ws.on('message', (data: Buffer) => ws.send(data, { binary: true })));
    const conn = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: (wss.address() as { port: number }).port }], limits: { chunkBytes: 4096 } });
    cleanup.push(() => conn.close());
    const got = within(conn.receive());
    const big = new Uint8Array(20_000).map((_, i) => i % 251);
    await conn.send({ n: 1 }, big);
    const m = await got;
    expect(m.header['n']).toBe(1);
    expect(Buffer.from(m.payload).equals(Buffer.from(big))).toBe(true);
  });

  it('a ws client talks to our server: its frames are parsed, its close code arrives', async () => {
    const server: ServerEndpoint = await listen({ security: 'clear', port: 0 });
    cleanup.push(() => server.close());
    const seen = once(server as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection]>;
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/flare`);
    await within(once(ws, 'open'));
    const [conn] = await within(seen);
    const got = within(conn.receive());
    ws.send(encodeFrame({ t: 'm', h: { hello: 'from ws' }, n: 3 }, new Uint8Array([1, 2, 3])));
    const m = await got;
    expect([m.header['hello'], [...m.payload]]).toEqual(['from ws', [1, 2, 3]]);
    ws.close(4000, 'E_TRANSPORT_PROTOCOL');
    const info = await within(conn.closed);
    expect([info.by, info.error?.code]).toEqual(['remote', 'E_TRANSPORT_PROTOCOL']);
  });
});
