import { createHash } from 'node:crypto';
import { decodeModel, encodeModelParts, model, tensor, type FLModel } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { dial, listen, type Connection, type Message, type ServerEndpoint } from '../src/index.js';
import { testPki, within } from './certs.js';

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

// The runtime saw models change after delivery (reproduced through @flare/auth in
// e2e/test/auth-ownership.e2e.test.ts). Cause: payloads were Node Buffers, views into the socket's read buffer at
// any byte offset; @flare/core's decodeModel copies an unaligned tensor with bytes.slice(), which for a Buffer
// is a view, and then reads the whole ArrayBuffer from offset 0: other frames' bytes, which the server's ws
// unmasks in place after the model was delivered.
describe('received payloads decode as models that stay what was sent', () => {
  const tensorDigest = (m: FLModel): string => {
    const h = createHash('sha256');
    for (const [name, t] of [...m.params].sort(([a], [b]) => a.localeCompare(b))) h.update(name).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    return h.digest('hex');
  };

  it.each(['clear', 'mtls'] as const)('over %s: plain Uint8Array payloads; models decoded at every byte alignment are right and stay right', async (security) => {
    const tls = { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem };
    const server = await listen<undefined>({ port: 0, host: '127.0.0.1', security, ...(security === 'clear' ? {} : { tls }) });
    servers.push(server as ServerEndpoint<unknown>);
    const held: Array<{ model: FLModel | undefined; atDelivery: string; plain: boolean; sliceCopies: boolean }> = [];
    const count = 24;
    const all = new Promise<void>((resolve) => {
      server.on('connection', (conn) => {
        conns.push(conn as Connection<unknown>);
        conn.on('message', (m) => {
          const copy = m.payload.slice();
          copy[0] = copy[0]! ^ 0xff;
          let decoded: FLModel | undefined;
          try {
            decoded = decodeModel(m.payload);
          } catch {
            decoded = undefined;
          }
          held.push({ model: decoded, atDelivery: decoded === undefined ? 'undecodable' : tensorDigest(decoded), plain: !Buffer.isBuffer(m.payload), sliceCopies: copy[0] !== m.payload[0] });
          if (held.length === count) resolve();
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
    for (let i = 0; i < count; i++) {
      // Header lengths 0..7 bytes apart move the payload to every offset modulo 8 within the socket's buffer.
      const n = 1 + ((i * 37) % 200);
      const m = model([
        ['w', tensor(Float32Array.from({ length: n }, (_, k) => i * 1000 + k), [n])],
        ['v', tensor(Float64Array.from({ length: 3 }, (_, k) => -i - k / 8), [3])],
      ]);
      sent.push(tensorDigest(m));
      await conn.send({ i, pad: 'x'.repeat(i % 8) }, encodeModelParts(m));
    }
    await within(all, 60_000, 'every model');
    expect(held.every((h) => h.plain && h.sliceCopies)).toBe(true);
    expect(held.map((h) => h.atDelivery)).toEqual(sent);
    expect(held.map((h) => (h.model === undefined ? 'undecodable' : tensorDigest(h.model)))).toEqual(sent);
  });
});

// A message that fits one frame is collected into a buffer of its own; its payload starts 8-byte aligned there
// whatever the header's length (the sender pads the JSON header), so a model's tensors decode as views of it
// instead of fresh copies (a misaligned 1 MB model cost an allocation and a copy on every receipt).
describe('whole-frame payloads arrive 8-byte aligned', () => {
  it.each(['clear', 'mtls'] as const)('over %s: every header length gives an aligned payload and tensors that are views of it', async (security) => {
    const tls = { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem };
    const server = await listen<undefined>({ port: 0, host: '127.0.0.1', security, ...(security === 'clear' ? {} : { tls }) });
    servers.push(server as ServerEndpoint<unknown>);
    const got: Array<{ offset: number; views: boolean; w: number[] }> = [];
    const count = 16;
    const all = new Promise<void>((resolve) => {
      server.on('connection', (conn) => {
        conns.push(conn as Connection<unknown>);
        conn.on('message', (m) => {
          const decoded = decodeModel(m.payload);
          const w = decoded.params.get('w')!.data as Float32Array;
          got.push({ offset: m.payload.byteOffset % 8, views: w.buffer === m.payload.buffer, w: [...w] });
          if (got.length === count) resolve();
        });
      });
    });
    const conn = await dial<undefined>({
      security,
      targets: [{ host: '127.0.0.1', port: server.port }],
      ...(security === 'clear' ? {} : { tls: { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem } }),
    });
    conns.push(conn as Connection<unknown>);
    for (let i = 0; i < count; i++) {
      const m = model([['w', tensor(Float32Array.from({ length: 64 }, (_, k) => i + k / 4), [64])]]);
      await conn.send({ i, pad: 'x'.repeat(i) }, encodeModelParts(m));
    }
    await within(all, 60_000, 'every model');
    expect(got.map((g) => g.offset)).toEqual(Array(count).fill(0));
    expect(got.every((g) => g.views)).toBe(true);
    expect(got.map((g) => g.w[1])).toEqual(Array.from({ length: count }, (_, i) => i + 0.25));
  });
});
