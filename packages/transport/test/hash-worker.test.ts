// Large guarded messages are hashed on a worker thread (src/hash-worker.ts): the guard must see exactly the
// SHA-256 of the bytes delivered, messages keep their order, a changed byte on the wire is refused, and a
// worker that dies mid-transfer costs speed, never a message or a stall.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { FlareError, TransportError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { hashWorkerTestHooks, stopHashWorker } from '../src/hash-worker.js';
import { dial, listen, type Connection, type Header, type Message, type MessageGuard, type ServerEndpoint } from '../src/index.js';
import { testPki, within } from './certs.js';

const pki = testPki();
// Resources that keep this process alive before any hashing worker exists (vitest's own, if any).
const aliveAtStart = process.getActiveResourcesInfo().filter((r) => r === 'MessagePort' || r === 'Worker').length;
const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  delete process.env['FLARE_TRANSPORT_HASH_WORKER'];
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A guard like @flare/auth's in what it relies on: the trailer carries the sender's payload SHA-256. */
function digestGuard(seen: string[] = []): MessageGuard {
  return {
    seal: (_h: Header, _n: number, digest: Uint8Array) => ({ sha: hex(digest) }),
    open: (_h: Header, _n: number, digest: Uint8Array, trailer: Header | undefined) => {
      seen.push(hex(digest));
      if (trailer?.['sha'] !== hex(digest)) throw new TransportError('E_TRANSPORT_REFUSED', 'payload digest mismatch');
      return true;
    },
  };
}

async function guardedPair(seen: string[], security: 'clear' | 'mtls' = 'mtls', port?: number): Promise<{ server: ServerEndpoint<number>; conn: Connection<number>; received: Message[]; next: () => Promise<Message> }> {
  const tls = { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem };
  const server = await listen<number>({
    port: 0,
    host: '127.0.0.1',
    security,
    ...(security === 'clear' ? {} : { tls }),
    authenticate: async (c) => {
      c.setGuard(digestGuard(seen));
      return 1;
    },
  });
  cleanup.push(() => server.close());
  const received: Message[] = [];
  const waiters: Array<(m: Message) => void> = [];
  server.on('connection', (c) => c.on('message', (m) => (waiters.length > 0 ? waiters.shift()!(m) : received.push(m))));
  const conn = await dial<number>({
    security,
    targets: [{ host: '127.0.0.1', port: port ?? server.port }],
    ...(security === 'clear' ? {} : { tls: { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem } }),
    authenticate: async (c) => {
      c.setGuard(digestGuard());
      return 1;
    },
  });
  cleanup.push(() => conn.close());
  const next = (): Promise<Message> => (received.length > 0 ? Promise.resolve(received.shift()!) : new Promise((r) => waiters.push(r)));
  return { server, conn, received, next };
}

const bigPayload = (mib: number, seed: number): Uint8Array => {
  const b = new Uint8Array(mib * 2 ** 20);
  for (let i = 0; i < b.length; i += 4096) b[i] = (i / 4096 + seed) & 0xff;
  return b;
};

describe('hashing large guarded messages on a worker thread', () => {
  it.each(['worker', 'inline (FLARE_TRANSPORT_HASH_WORKER=0)'])('%s: the guard sees the SHA-256 of exactly the delivered bytes; order is kept', async (mode) => {
    if (mode !== 'worker') process.env['FLARE_TRANSPORT_HASH_WORKER'] = '0';
    const seen: string[] = [];
    const { conn, next } = await guardedPair(seen);
    const big = bigPayload(20, 1);
    const sends = [conn.send({ i: 0 }, big), conn.send({ i: 1 }, new Uint8Array([1, 2, 3])), conn.send({ i: 2 }, bigPayload(9, 2)), conn.send({ i: 3 })];
    const got = [await within(next(), 20_000), await within(next(), 20_000), await within(next(), 20_000), await within(next(), 20_000)];
    await Promise.all(sends);
    expect(got.map((m) => m.header['i'])).toEqual([0, 1, 2, 3]);
    expect(sha(got[0]!.payload)).toBe(sha(big));
    expect(seen).toEqual(got.map((m) => sha(m.payload)));
  });

  it('refuses a message with one byte changed on the wire, hashed on the worker', async () => {
    // A relay that flips one byte 12 MiB into what the client sends (inside the 20 MiB message's chunks). Clear
    // connection: the byte is masked, and flipping a masked byte flips the unmasked one.
    const seen: string[] = [];
    const upstream = await guardedPair(seen, 'clear');
    await upstream.conn.close();
    const sockets = new Set<Socket>();
    let forwarded = 0;
    const relay = createNetServer((client) => {
      const backend = netConnect({ host: '127.0.0.1', port: upstream.server.port });
      sockets.add(client).add(backend);
      client.on('data', (d: Buffer) => {
        const at = 12 * 2 ** 20 - forwarded;
        if (at >= 0 && at < d.length) d[at] = d[at]! ^ 0x01;
        forwarded += d.length;
        backend.write(d);
      });
      backend.pipe(client);
      backend.on('error', () => client.destroy());
      client.on('error', () => backend.destroy());
    });
    relay.listen(0, '127.0.0.1');
    await once(relay, 'listening');
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => relay.close(r));
    });
    const conn = await dial<number>({
      security: 'clear',
      targets: [{ host: '127.0.0.1', port: (relay.address() as { port: number }).port }],
      authenticate: async (c) => {
        c.setGuard(digestGuard());
        return 1;
      },
    });
    cleanup.push(() => conn.close());
    await conn.send({ i: 0 }, bigPayload(20, 3)).catch(() => undefined);
    const info = await within(conn.closed, 20_000, 'the refusal');
    expect(info.error).toBeInstanceOf(FlareError);
    expect(info.error?.code).toBe('E_TRANSPORT_REFUSED');
    expect(seen).toHaveLength(1);
  });

  it('a worker that dies during a transfer: the message still arrives whole and verified, and the next one too', async () => {
    const seen: string[] = [];
    const { conn, next } = await guardedPair(seen);
    const first = bigPayload(48, 4);
    // Stop the worker after it was handed the third chunk of the first message.
    let updates = 0;
    let stopped: Promise<void> | undefined;
    hashWorkerTestHooks.afterUpdate = () => {
      if (++updates === 3) stopped = stopHashWorker();
    };
    cleanup.push(() => {
      hashWorkerTestHooks.afterUpdate = undefined;
    });
    await conn.send({ i: 0 }, first);
    const got = await within(next(), 20_000, 'the first message');
    expect(stopped).toBeDefined();
    await stopped;
    expect(sha(got.payload)).toBe(sha(first));
    const second = bigPayload(16, 5);
    await conn.send({ i: 1 }, second);
    const again = await within(next(), 20_000, 'the second message');
    expect(sha(again.payload)).toBe(sha(second));
    expect(seen).toEqual([sha(first), sha(second)]);
  });
});

describe('the hashing worker', () => {
  it('never keeps a process alive (unref: only sockets of transfers in progress do)', async () => {
    const { conn, next } = await guardedPair([]);
    await conn.send({ i: 0 }, bigPayload(9, 6));
    await within(next(), 20_000);
    expect(process.getActiveResourcesInfo().filter((r) => r === 'MessagePort' || r === 'Worker').length).toBe(aliveAtStart);
  });
});
