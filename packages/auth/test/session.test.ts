import { FlareError } from '@flare/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientAuth, createServerAuth, type ClientAuthOptions, type ServerAuth, type ServerAuthOptions, type Session } from '../src/index.js';
import { channelPair, makeKits, type Frame, type Kits, type MemoryChannel } from './helpers.js';

let kits: Kits;
beforeAll(async () => {
  kits = await makeKits('sessiontest');
});

interface Live {
  server: Session;
  client: Session;
  auth: ServerAuth;
  pair: { client: MemoryChannel; server: MemoryChannel };
}

async function connect(server: Partial<ServerAuthOptions> = {}, client: Partial<ClientAuthOptions> = {}, auth?: ServerAuth): Promise<Live> {
  const pair = channelPair();
  const sa = auth ?? createServerAuth({ kit: kits.server, ...server });
  const ca = createClientAuth({ kit: kits.client, renewAt: false, ...client });
  const [s, c] = await Promise.all([sa.accept(pair.server), ca.login(pair.client)]);
  return { server: s, client: c, auth: sa, pair };
}

const bytes = (...v: number[]): Uint8Array => new Uint8Array(v);
const closedCode = async (ch: MemoryChannel): Promise<string | undefined> => (await ch.closed).error?.code;

describe('sealed messages', () => {
  it('delivers authenticated messages both ways, in order, with the MAC trailer stripped', async () => {
    const { pair } = await connect();
    await pair.client.send({ type: 'result', round: 1 }, bytes(1, 2, 3));
    await pair.server.send({ type: 'task' }, bytes(9));
    expect(pair.server.delivered.map((m) => ({ ...m.header }))).toEqual([{ type: 'result', round: 1 }]);
    expect(pair.client.delivered.map((m) => ({ ...m.header }))).toEqual([{ type: 'task' }]);
    expect(pair.server.delivered[0]!.trailer).toBeUndefined();
  });

  it('refuses a replayed message (E_AUTH_REPLAY)', async () => {
    const { pair } = await connect();
    await pair.client.send({ n: 1 });
    await pair.client.send({ n: 2 });
    pair.server.inject(pair.client.sent.at(-2)!);
    expect(await closedCode(pair.server)).toBe('E_AUTH_REPLAY');
    expect(await closedCode(pair.client)).toBe('E_AUTH_REPLAY');
  });

  it('refuses a reordered message (E_AUTH_OUT_OF_ORDER)', async () => {
    const { pair } = await connect();
    const held: Frame[] = [];
    pair.client.wire = (f) => (held.push(f), undefined);
    await pair.client.send({ n: 1 });
    await pair.client.send({ n: 2 });
    pair.server.inject(held[1]!);
    expect(await closedCode(pair.server)).toBe('E_AUTH_OUT_OF_ORDER');
  });

  it('refuses a tampered header (E_AUTH_MAC)', async () => {
    const { pair } = await connect();
    pair.client.wire = (f) => ({ ...f, header: { ...f.header, round: 2 } });
    await pair.client.send({ type: 'result', round: 1 });
    expect(await closedCode(pair.server)).toBe('E_AUTH_MAC');
    expect(pair.server.delivered).toHaveLength(0);
  });

  it('refuses a message naming another sender in its header: only the MAC decides, and the field changes it (E_AUTH_MAC)', async () => {
    const { pair, server } = await connect();
    pair.client.wire = (f) => ({ ...f, header: { ...f.header, from: 'site-2' } });
    await pair.client.send({ type: 'result', from: 'site-1' });
    expect(await closedCode(pair.server)).toBe('E_AUTH_MAC');
    expect(server.peer.name).toBe('site-1');
  });

  it('refuses one flipped payload byte (E_AUTH_MAC)', async () => {
    const { pair } = await connect();
    pair.client.wire = (f) => {
      const p = f.payload.slice();
      p[500] = p[500]! ^ 0x01;
      return { ...f, payload: p };
    };
    await pair.client.send({ type: 'result' }, new Uint8Array(1000));
    expect(await closedCode(pair.server)).toBe('E_AUTH_MAC');
  });

  it('refuses a message without a MAC on an authenticated connection (E_AUTH_MAC)', async () => {
    const { pair } = await connect();
    pair.client.wire = (f) => ({ ...f, trailer: undefined });
    await pair.client.send({ type: 'result' });
    expect(await closedCode(pair.server)).toBe('E_AUTH_MAC');
  });

  it('refuses a stale timestamp (E_AUTH_STALE)', async () => {
    let skew = 0;
    const { pair } = await connect({}, { now: () => Date.now() + skew });
    skew = -5 * 60_000;
    await pair.client.send({ type: 'late' });
    expect(await closedCode(pair.server)).toBe('E_AUTH_STALE');
  });

  it('refuses a message on an expired session (E_AUTH_SESSION_EXPIRED), and the sender refuses to seal one', async () => {
    let t = Date.now();
    const clock = (): number => t;
    const { pair } = await connect({ sessionTtlMs: 60_000, now: clock }, { now: clock });
    await pair.client.send({ ok: true });
    t += 61_000;
    await expect(pair.client.send({ late: true })).rejects.toMatchObject({ code: 'E_AUTH_SESSION_EXPIRED' });
    // A sender whose clock lags a little still gets refused by the receiver, whose clock decides.
    let u = Date.now();
    let lag = 0;
    const lagging = await connect({ sessionTtlMs: 60_000, now: () => u }, { now: () => u - lag });
    u += 61_000;
    lag = 2000;
    await lagging.pair.client.send({ late: true });
    expect(await closedCode(lagging.pair.server)).toBe('E_AUTH_SESSION_EXPIRED');
  });

  it('refuses a session id reused on another connection (E_AUTH_SESSION_BINDING)', async () => {
    const auth = createServerAuth({ kit: kits.server });
    const a = await connect({}, {}, auth);
    const b = await connect({}, { kit: kits.client2 }, auth);
    await a.pair.client.send({ type: 'result' }, bytes(1));
    b.pair.server.inject(a.pair.client.sent.at(-1)!);
    expect(await closedCode(b.pair.server)).toBe('E_AUTH_SESSION_BINDING');
  });
});

describe('renewal and revocation', () => {
  it('renews keys without dropping messages in flight in either direction', async () => {
    const { pair, client, server } = await connect({ sessionTtlMs: 60_000 });
    const before = client.expiresAt.getTime();
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < 5; i++) sends.push(pair.client.send({ i }), pair.server.send({ j: i }));
    const renewal = client.renew();
    for (let i = 5; i < 10; i++) sends.push(pair.client.send({ i }), pair.server.send({ j: i }));
    await Promise.all([...sends, renewal]);
    for (let i = 10; i < 12; i++) await Promise.all([pair.client.send({ i }), pair.server.send({ j: i })]);
    expect(client.epoch).toBe(1);
    expect(server.epoch).toBe(1);
    expect(client.expiresAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(pair.server.delivered.map((m) => m.header['i'])).toEqual([...Array(12).keys()]);
    expect(pair.client.delivered.map((m) => m.header['j'])).toEqual([...Array(12).keys()]);
    expect(pair.server.isClosed || pair.client.isClosed).toBe(false);
    // Exported keying material is a property of the login, stable across renewals.
    expect(Buffer.from(client.exportKeyingMaterial('n', 16)).equals(Buffer.from(server.exportKeyingMaterial('n', 16)))).toBe(true);
  });

  it('renews automatically before expiry', async () => {
    // Renewal starts 200 ms in, expiry is 20 s away: a renewal slowed by a busy machine still lands in time.
    const { client } = await connect({ sessionTtlMs: 20_000 }, { renewAt: 0.01 });
    await new Promise<void>((resolve, reject) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (client.epoch >= 1) {
          clearInterval(poll);
          resolve();
        } else if (Date.now() - started > 60_000) {
          clearInterval(poll);
          reject(new Error('no renewal within 60 s'));
        }
      }, 10);
    });
    expect(client.epoch).toBeGreaterThanOrEqual(1);
  });

  it('revokes one session: its connection closes with E_AUTH_SESSION_REVOKED and the other session lives', async () => {
    const auth = createServerAuth({ kit: kits.server });
    const a = await connect({}, {}, auth);
    const b = await connect({}, { kit: kits.client2 }, auth);
    expect(auth.sessions.size).toBe(2);
    expect(auth.sessions.revokeSession(a.server.id)).toBe(true);
    expect(await closedCode(a.pair.client)).toBe('E_AUTH_SESSION_REVOKED');
    await b.pair.client.send({ still: 'here' });
    expect(b.pair.server.delivered).toHaveLength(1);
    expect(auth.sessions.revokeSession('unknown')).toBe(false);
  });

  it('revokes a participant: every session of it closes (E_AUTH_SESSION_REVOKED)', async () => {
    const auth = createServerAuth({ kit: kits.server, maxSessionsPerParticipant: { client: 2 } });
    const a = await connect({}, {}, auth);
    const b = await connect({}, {}, auth);
    const admin = await connect({}, { kit: kits.admin }, auth);
    expect(auth.sessions.revokeParticipant('site-1')).toBe(2);
    expect(await closedCode(a.pair.client)).toBe('E_AUTH_SESSION_REVOKED');
    expect(await closedCode(b.pair.client)).toBe('E_AUTH_SESSION_REVOKED');
    expect(admin.pair.client.isClosed).toBe(false);
    expect(auth.sessions.isRevoked('site-1')).toBe(true);
    await expect(a.pair.server.send({})).rejects.toBeInstanceOf(FlareError);
  });
});
