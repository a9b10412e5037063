// Who owns a received payload, through @flare/auth's sealed sessions over @flare/transport and real sockets.
// The runtime reported models changing after delivery; packages/transport/test/ownership.test.ts checks the
// transport alone. Here every payload is a model that the receiver decodes zero-copy (@flare/core decodeModel:
// its tensors are views of the payload) and keeps while later messages, session renewals and other
// connections' traffic arrive; at the end every kept model must still hold what was sent, in both directions,
// over clear and mtls. The sender reuses one buffer for every model (refilled after each awaited send), so a
// transport that still read it after send() resolved would be caught too.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientAuth, createServerAuth, type Session } from '@flare/auth';
import { decodeModel, encodeModelParts, model, tensor, type FLModel } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { clientOptionsFromKit, dial, listen, serverOptionsFromKit, type Connection, type Message, type ServerEndpoint } from '@flare/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject } from './support.js';

const PROJECT = loopbackProject('e2eownership', { sites: ['site-1', 'site-2'] });

let workspace: string;
let serverKit: Kit;
const clientKits: Kit[] = [];
const cleanup: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  workspace = await mkdtemp(join(tmpdir(), 'flare-e2e-ownership-'));
  const r = await provision(parseProject(PROJECT), { workspace });
  const dir = (n: string): string => r.kits.find((k) => k.name === n)!.dir;
  serverKit = await loadKit(dir('server1'));
  clientKits.push(await loadKit(dir('site-1')), await loadKit(dir('site-2')));
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
afterAll(() => rm(workspace, { recursive: true, force: true }));

const withSecurity = (kit: Kit, security: 'clear' | 'mtls'): Kit => ({ ...kit, connectionSecurity: security });
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
/** A digest of a model's tensor bytes, in name order (what a held model must still hold at the end). */
const modelDigest = (m: FLModel): string => {
  const h = createHash('sha256');
  for (const name of [...m.params.keys()].sort()) {
    const d = m.params.get(name)!.data;
    h.update(name).update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
};

// Element counts per message: tiny models that share socket reads with their neighbours, ones just under and
// over the 1 MiB chunk (one frame or streamed), and multi-chunk ones.
const SIZES = [1, 7, 300, 4_000, 65_000, 262_000, 262_150, 300_000, 1_000_000, 17, 2_500_000, 3];
const CHUNK = 1024 * 1024;

/** Sends every size as a model through one reused buffer, refilled after each awaited send. */
async function sendModels(conn: Connection<Session>, tag: string, sessionRenewAt: number): Promise<string[]> {
  const shared = new Float32Array(Math.max(...SIZES) + 8);
  const sent: string[] = [];
  for (const [i, n] of SIZES.entries()) {
    if (i === sessionRenewAt && conn.side === 'client') await conn.auth.renew();
    // An odd offset in the shared buffer: the encoder copies or views as it needs.
    const data = shared.subarray(i % 3, (i % 3) + n);
    for (let k = 0; k < n; k++) data[k] = i * 1_000_003 + k;
    const m = model([
      ['w', tensor(data, [n])],
      ['b', tensor(Float64Array.from({ length: (i % 5) + 1 }, (_, k) => -k - i), [(i % 5) + 1])],
    ]);
    sent.push(modelDigest(m));
    await conn.send({ tag, i }, encodeModelParts(m));
    // Overwrite what was just sent: only a transport still reading the sender's memory would notice.
    shared.fill(-1);
    // A small message between models, as task headers and acks travel.
    await conn.send({ tag, i, note: 'between' }, new Uint8Array([i & 0xff, 1, 2, 3]));
  }
  return sent;
}

interface Held {
  readonly i: number;
  readonly payloadSha: string;
  readonly payload: Uint8Array;
  readonly model: FLModel;
  readonly modelSha: string;
}

/** Decodes each model payload zero-copy on delivery and keeps it. */
function holdModels(conn: Connection<Session>, tag: string, held: Held[], done: () => void): void {
  conn.on('message', (m: Message) => {
    if (m.header['tag'] !== tag || m.header['note'] !== undefined) return;
    const decoded = decodeModel(m.payload);
    held.push({ i: m.header['i'] as number, payloadSha: sha(m.payload), payload: m.payload, model: decoded, modelSha: modelDigest(decoded) });
    if (held.length === SIZES.length) done();
  });
}

function expectIntact(held: readonly Held[], sent: readonly string[]): void {
  expect(held.map((h) => h.i)).toEqual(SIZES.map((_, i) => i));
  // At delivery, each model was what was sent ...
  expect(held.map((h) => h.modelSha)).toEqual(sent);
  // ... and after everything that came later, it still is, and so are the payload bytes under it.
  expect(held.map((h) => modelDigest(h.model))).toEqual(sent);
  expect(held.map((h) => sha(h.payload))).toEqual(held.map((h) => h.payloadSha));
}

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref())]);

describe.each(['clear', 'mtls'] as const)('received payloads stay the receiver\'s through sealed sessions (%s)', (security) => {
  it('models decoded zero-copy keep their values across later messages, renewals and two sites, both directions', async () => {
    const auth = createServerAuth({ kit: serverKit });
    const server: ServerEndpoint<Session> = await listen<Session>({
      ...serverOptionsFromKit(withSecurity(serverKit, security)),
      host: '127.0.0.1',
      port: 0,
      limits: { chunkBytes: CHUNK },
      authenticate: (c) => auth.accept(c),
    });
    cleanup.push(() => server.close());
    const atServer = new Map<string, Held[]>();
    const serverDone = new Map<string, Promise<void>>();
    const sentByServer = new Map<string, Promise<string[]>>();
    const ready = new Map<string, () => void>();
    for (const k of clientKits) {
      const held: Held[] = [];
      atServer.set(k.participant.name, held);
      serverDone.set(k.participant.name, new Promise((resolve) => ready.set(k.participant.name, resolve)));
    }
    server.on('connection', (c) => {
      const name = c.auth.peer.name;
      holdModels(c, `up:${name}`, atServer.get(name)!, ready.get(name)!);
      // The server sends its own models down at the same time (server frames are not masked).
      sentByServer.set(name, sendModels(c, `down:${name}`, -1));
    });

    const runs = clientKits.map(async (kit) => {
      const login = createClientAuth({ kit, renewAt: false });
      const conn = await dial<Session>({
        ...clientOptionsFromKit(withSecurity(kit, security)),
        targets: [{ host: '127.0.0.1', port: server.port }],
        limits: { chunkBytes: CHUNK },
        authenticate: (c) => login.login(c),
      });
      cleanup.push(() => conn.close());
      const held: Held[] = [];
      const got = new Promise<void>((resolve) => holdModels(conn, `down:${kit.participant.name}`, held, resolve));
      const epoch0 = conn.auth.epoch;
      const sent = await sendModels(conn, `up:${kit.participant.name}`, 5);
      expect(conn.auth.epoch).toBe(epoch0 + 1);
      await within(got, 60_000, 'the server\'s models');
      return { name: kit.participant.name, sent, held };
    });
    const results = await Promise.all(runs);
    for (const r of results) {
      await within(serverDone.get(r.name)!, 60_000, `the models of ${r.name}`);
      expectIntact(atServer.get(r.name)!, r.sent);
      expectIntact(r.held, await sentByServer.get(r.name)!);
    }
  });
});
