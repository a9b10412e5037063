import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { dial, listen, type Connection, type Message, type ServerEndpoint } from '../src/index.js';
import { testPki } from './certs.js';

const pki = testPki();
const servers: ServerEndpoint<unknown>[] = [];
const conns: Connection<unknown>[] = [];
afterEach(async () => {
  await Promise.all(conns.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('received payloads belong to the receiver', () => {
  it.each(['clear', 'mtls'] as const)('over %s: no later message changes an earlier payload (small, chunked, interleaved)', async (security) => {
    const tls = { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem };
    const server = await listen<undefined>({ port: 0, host: '127.0.0.1', security, ...(security === 'clear' ? {} : { tls }) });
    servers.push(server as ServerEndpoint<unknown>);
    const received: Message[] = [];
    const sizes = [3, 100, 5000, 70_000, 1_500_000, 2 ** 20, 17, 3_000_000, 64, 200_000];
    const all = new Promise<void>((resolve) => {
      server.on('connection', (conn) => {
        conns.push(conn as Connection<unknown>);
        conn.on('message', (m) => {
          received.push(m);
          if (received.length === sizes.length * 3) resolve();
        });
      });
    });
    const conn = await dial<undefined>({
      security,
      targets: [{ host: '127.0.0.1', port: server.port }],
      ...(security === 'clear' ? {} : { tls: { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem } }),
    });
    conns.push(conn as Connection<unknown>);
    const sent: string[] = [];
    let fill = 1;
    for (let round = 0; round < 3; round++) {
      for (const n of sizes) {
        const p = new Uint8Array(n).fill(fill++ & 0xff);
        sent.push(digest(p));
        await conn.send({ i: sent.length }, p);
      }
    }
    await all;
    expect(received.map((m) => digest(m.payload))).toEqual(sent);
  });
});
