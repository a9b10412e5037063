// What a receiver gives a message in progress (#14.5): a minimum rate and a deadline, memory from a budget
// shared by the endpoint, and the buffer the application supplies.
import { once } from 'node:events';
import { encodeFrame } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ReceiveBudget } from '../src/budget.js';
import { dial, listen, type Connection, type Message, type ServerEndpoint, type ServerOptions } from '../src/index.js';
import { within } from './certs.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function server(options: Partial<ServerOptions<undefined>> = {}): Promise<{ endpoint: ServerEndpoint<undefined>; messages: Message[]; delivered: Promise<Message> }> {
  const endpoint = await listen({ security: 'clear', port: 0, host: '127.0.0.1', ...options });
  cleanup.push(() => endpoint.close());
  const messages: Message[] = [];
  let resolve!: (m: Message) => void;
  const delivered = new Promise<Message>((r) => (resolve = r));
  endpoint.on('connection', (c) =>
    c.on('message', (m) => {
      messages.push(m);
      resolve(m);
    }),
  );
  return { endpoint, messages, delivered };
}

/** A peer built on the ws package that writes frames of its choice (and answers pings, as ws does). */
async function rawPeer(port: number): Promise<{ ws: WebSocket; closed: Promise<[number, string]> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/flare`);
  cleanup.push(() => ws.terminate());
  await within(once(ws, 'open'));
  const closed = (once(ws, 'close') as Promise<[number, Buffer]>).then(([code, reason]): [number, string] => [code, reason.toString()]);
  return { ws, closed };
}

const start = (n: number): Uint8Array => encodeFrame({ t: 'm', h: { big: true }, n });
const chunk = (bytes: number): Uint8Array => encodeFrame({ t: 'c' }, new Uint8Array(bytes).fill(7));

describe('a message in progress (#14.5)', () => {
  it('a peer that announces a large message, streams a little and stalls is cut (E_TRANSPORT_STALLED), although it answers pings', async () => {
    const { endpoint } = await server({ limits: { chunkBytes: 1024, stallWindowMs: 200, minBytesPerSecond: 1024 * 1024, heartbeatMs: 50 } });
    const peer = await rawPeer(endpoint.port);
    peer.ws.send(start(10 * 1024 * 1024));
    peer.ws.send(chunk(1024));
    expect(await within(peer.closed)).toEqual([4000, 'E_TRANSPORT_STALLED']);
  });

  it('a message that keeps the rate but does not end by its deadline is cut (E_TRANSPORT_STALLED)', async () => {
    const { endpoint } = await server({ limits: { chunkBytes: 1024, stallWindowMs: 60_000, messageTimeoutMs: 300 } });
    const peer = await rawPeer(endpoint.port);
    peer.ws.send(start(10 * 1024 * 1024));
    peer.ws.send(chunk(1024));
    expect(await within(peer.closed)).toEqual([4000, 'E_TRANSPORT_STALLED']);
  });

  it('a stalled peer holds the memory budget only until it is cut; a message waiting for the budget then completes', async () => {
    const { endpoint, delivered } = await server({ limits: { chunkBytes: 1024, receiveBudgetBytes: 6000, stallWindowMs: 300, minBytesPerSecond: 64 * 1024 } });
    const staller = await rawPeer(endpoint.port);
    staller.ws.send(start(5000));
    staller.ws.send(chunk(1024));
    const honest = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: endpoint.port }], limits: { chunkBytes: 1024 } });
    cleanup.push(() => honest.close());
    const payload = new Uint8Array(5000).map((_, i) => i & 0xff);
    await honest.send({ honest: true }, payload);
    const m = await within(delivered, 60_000);
    expect(m.header['honest']).toBe(true);
    expect(Buffer.from(m.payload).equals(Buffer.from(payload))).toBe(true);
    expect(await within(staller.closed)).toEqual([4000, 'E_TRANSPORT_STALLED']);
  });

  it('a message larger than the whole budget is refused when it starts (E_TRANSPORT_MESSAGE_TOO_LARGE)', async () => {
    const { endpoint } = await server({ limits: { chunkBytes: 1024, receiveBudgetBytes: 4096 } });
    const peer = await rawPeer(endpoint.port);
    peer.ws.send(start(5000));
    expect(await within(peer.closed)).toEqual([4000, 'E_TRANSPORT_MESSAGE_TOO_LARGE']);
  });
});

describe('receiveBuffer', () => {
  it('a streamed message is received into the buffer the application supplies', async () => {
    const mine = new Uint8Array(6000);
    const asked: number[] = [];
    const { endpoint, delivered } = await server({ limits: { chunkBytes: 1024 }, receiveBuffer: (length) => (asked.push(length), mine) });
    const conn = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: endpoint.port }], limits: { chunkBytes: 1024 } });
    cleanup.push(() => conn.close());
    const payload = new Uint8Array(6000).map((_, i) => (i * 7) & 0xff);
    await conn.send({}, payload);
    const m = await within(delivered);
    expect(asked).toEqual([6000]);
    expect(m.payload).toBe(mine);
    expect(Buffer.from(mine).equals(Buffer.from(payload))).toBe(true);
  });

  it('a buffer of the wrong size is a programming error: the connection closes (E_TRANSPORT_PROTOCOL), nothing is written past it', async () => {
    const small = new Uint8Array(10);
    const { endpoint } = await server({ limits: { chunkBytes: 1024 }, receiveBuffer: () => small });
    const conn: Connection<undefined> = await dial({ security: 'clear', targets: [{ host: '127.0.0.1', port: endpoint.port }], limits: { chunkBytes: 1024 } });
    cleanup.push(() => conn.close());
    await conn.send({}, new Uint8Array(3000)).catch(() => undefined);
    expect((await within(conn.closed)).error?.code).toBe('E_TRANSPORT_PROTOCOL');
    expect([...small]).toEqual(new Array(10).fill(0));
  });
});

describe('ReceiveBudget', () => {
  it('takes what fits, queues the rest first come first served, grants asynchronously when memory comes back', async () => {
    const budget = new ReceiveBudget(10);
    expect(budget.take(6)).toBe(true);
    expect(budget.take(6)).toBe(false);
    const granted: string[] = [];
    budget.wait(6, () => granted.push('a'));
    const cancelB = budget.wait(2, () => granted.push('b'));
    // Nobody jumps the queue, even when it would fit.
    expect(budget.take(1)).toBe(false);
    cancelB();
    budget.give(6);
    expect(granted).toEqual([]);
    await Promise.resolve();
    await Promise.resolve();
    expect(granted).toEqual(['a']);
    expect(budget.used).toBe(6);
  });
});
