// What the runtime audits: refusals of messages inside an established session, reported on both sides with the
// peer named (issue #14.15), and a newer login replacing an older session of the same participant (#14.5).
import type { FlareError } from '@flare/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientAuth, createServerAuth, type ClientAuth, type MessageRefused, type ServerAuth, type ServerAuthOptions, type Session, type SessionReplaced } from '../src/index.js';
import { channelPair, makeKits, type Frame, type Kits, type MemoryChannel } from './helpers.js';
import type { Kit } from '@flare/pki';

let kits: Kits;
beforeAll(async () => {
  kits = await makeKits('eventstest');
});

interface Live {
  pair: { client: MemoryChannel; server: MemoryChannel };
  server: Session;
  client: Session;
  clientAuth: ClientAuth;
  serverEvents: MessageRefused[];
  clientEvents: MessageRefused[];
}

async function connect(auth: ServerAuth, kit: Kit = kits.client): Promise<Live> {
  const pair = channelPair();
  const clientAuth = createClientAuth({ kit, renewAt: false });
  const serverEvents: MessageRefused[] = [];
  const clientEvents: MessageRefused[] = [];
  auth.on('refused', (e) => serverEvents.push(e));
  clientAuth.on('refused', (e) => clientEvents.push(e));
  const [server, client] = await Promise.all([auth.accept(pair.server), clientAuth.login(pair.client)]);
  return { pair, server, client, clientAuth, serverEvents, clientEvents };
}

/** A login that may fail: the failing side closes with its code, as the transport does. */
async function tryLogin(auth: ServerAuth, now: () => number): Promise<{ server: PromiseSettledResult<Session>; pair: ReturnType<typeof channelPair> }> {
  const pair = channelPair();
  const client = createClientAuth({ kit: kits.client, renewAt: false, now });
  const closeOnFailure = (ch: MemoryChannel) => async (e: FlareError): Promise<never> => {
    await ch.close(e);
    throw e;
  };
  const [server] = await Promise.allSettled([auth.accept(pair.server).catch(closeOnFailure(pair.server)), client.login(pair.client).catch(closeOnFailure(pair.client))]);
  return { server, pair };
}

const closedCode = async (ch: MemoryChannel): Promise<string | undefined> => (await ch.closed).error?.code;

describe('refused messages are reported on both sides, with the peer named (#14.15)', () => {
  const attacks: ReadonlyArray<readonly [string, (live: Live) => Promise<void>]> = [
    [
      'E_AUTH_MAC',
      async ({ pair }) => {
        pair.client.wire = (f) => ({ ...f, header: { ...f.header, round: 2 } });
        await pair.client.send({ type: 'result', round: 1 });
      },
    ],
    [
      'E_AUTH_REPLAY',
      async ({ pair }) => {
        await pair.client.send({ n: 1 });
        pair.server.inject(pair.client.sent.at(-1)!);
      },
    ],
    [
      'E_AUTH_OUT_OF_ORDER',
      async ({ pair }) => {
        const held: Frame[] = [];
        pair.client.wire = (f) => (held.push(f), undefined);
        await pair.client.send({ n: 1 });
        await pair.client.send({ n: 2 });
        pair.server.inject(held[1]!);
      },
    ],
  ];
  for (const [code, attack] of attacks) {
    it(`client to server: the server detects ${code} (by local), the client hears it from the server's authenticated goodbye (by peer)`, async () => {
      const live = await connect(createServerAuth({ kit: kits.server }));
      await attack(live);
      expect(await closedCode(live.pair.server)).toBe(code);
      await live.pair.client.closed;
      expect(live.serverEvents).toEqual([expect.objectContaining({ code, by: 'local', sessionId: live.server.id, peer: { name: 'site-1', org: 'nvidia', type: 'client' } })]);
      expect(live.clientEvents).toEqual([expect.objectContaining({ code, by: 'peer', sessionId: live.client.id, peer: { name: 'server1', org: 'nvidia', type: 'server' } })]);
    });
  }

  it('server to client: the client detects E_AUTH_MAC (by local), the server hears it (by peer)', async () => {
    const live = await connect(createServerAuth({ kit: kits.server }));
    live.pair.server.wire = (f) => {
      const payload = f.payload.slice();
      payload[0] = payload[0]! ^ 1;
      return { ...f, payload };
    };
    await live.pair.server.send({ type: 'task' }, new Uint8Array([1, 2, 3]));
    expect(await closedCode(live.pair.client)).toBe('E_AUTH_MAC');
    expect(live.clientEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_MAC', 'local', 'server1']]);
    expect(live.serverEvents.map((e) => [e.code, e.by, e.peer.name])).toEqual([['E_AUTH_MAC', 'peer', 'site-1']]);
  });

  it('a peer refusal that is not authenticated (a forged close) is not reported as the peer\'s word', async () => {
    const live = await connect(createServerAuth({ kit: kits.server }));
    // The "server" end closes without a guard: on a real wire, a close frame injected by someone on the path.
    live.pair.server.guard = undefined;
    await live.pair.server.close(Object.assign(new Error('forged'), { code: 'E_AUTH_MAC' }) as unknown as FlareError);
    expect((await live.pair.client.closed).authenticated).toBe(false);
    expect(live.clientEvents).toEqual([]);
  });

  it('a failed login is the login\'s refusal, not a refused message: no event', async () => {
    const auth = createServerAuth({ kit: kits.server, maxSkewMs: 1000 });
    const events: MessageRefused[] = [];
    auth.on('refused', (e) => events.push(e));
    const { server } = await tryLogin(auth, () => Date.now() - 60_000);
    expect((server as PromiseRejectedResult).reason).toMatchObject({ code: 'E_AUTH_STALE' });
    expect(events).toEqual([]);
  });

  it('a listener that throws does not change the refusal or stop other listeners', async () => {
    const auth = createServerAuth({ kit: kits.server });
    auth.on('refused', () => {
      throw new Error('listener bug');
    });
    const live = await connect(auth);
    await live.pair.client.send({ n: 1 });
    live.pair.server.inject(live.pair.client.sent.at(-1)!);
    expect(await closedCode(live.pair.server)).toBe('E_AUTH_REPLAY');
    expect(live.serverEvents.map((e) => e.code)).toEqual(['E_AUTH_REPLAY']);
  });
});

describe('one live session per participant (#14.5)', () => {
  const replacedEvents = (auth: ServerAuth): SessionReplaced[] => {
    const seen: SessionReplaced[] = [];
    auth.on('replaced', (e) => seen.push(e));
    return seen;
  };

  it('a newer login of a site replaces its older session (E_AUTH_SESSION_REPLACED, authenticated) and says so in a replaced event', async () => {
    const auth = createServerAuth({ kit: kits.server });
    const replaced = replacedEvents(auth);
    const first = await connect(auth);
    const second = await connect(auth);
    const closed = await first.pair.client.closed;
    expect([closed.error?.code, closed.authenticated]).toEqual(['E_AUTH_SESSION_REPLACED', true]);
    expect(replaced).toEqual([{ peer: { name: 'site-1', org: 'nvidia', type: 'client' }, sessionId: first.server.id, replacedBy: second.server.id }]);
    expect(auth.sessions.sessionsOf('site-1').map((s) => s.id)).toEqual([second.server.id]);
    await second.pair.client.send({ still: 'here' });
    expect(second.pair.server.delivered).toHaveLength(1);
  });

  it('other participants keep their sessions', async () => {
    const auth = createServerAuth({ kit: kits.server });
    const a = await connect(auth);
    const b = await connect(auth, kits.client2);
    await connect(auth);
    expect(a.pair.client.isClosed).toBe(true);
    expect(b.pair.client.isClosed).toBe(false);
  });

  it('an admin may hold 4 sessions; a fifth replaces the oldest', async () => {
    const auth = createServerAuth({ kit: kits.server });
    const admins: Live[] = [];
    for (let i = 0; i < 5; i++) admins.push(await connect(auth, kits.admin));
    expect(admins.map((a) => a.pair.client.isClosed)).toEqual([true, false, false, false, false]);
    expect(await closedCode(admins[0]!.pair.client)).toBe('E_AUTH_SESSION_REPLACED');
  });

  it('the limit is configurable per type or for all, and checked', () => {
    const bad: Array<NonNullable<ServerAuthOptions['maxSessionsPerParticipant']>> = [0, { admin: 1.5 }, { client: -1 }];
    for (const maxSessionsPerParticipant of bad) expect(() => createServerAuth({ kit: kits.server, maxSessionsPerParticipant })).toThrow(RangeError);
    expect(() => createServerAuth({ kit: kits.server, maxSessionsPerParticipant: 3 })).not.toThrow();
  });

  it('tells the channel who logged in once the signature verified, and not for a login that fails before', async () => {
    const good = channelPair();
    const auth = createServerAuth({ kit: kits.server });
    await Promise.all([auth.accept(good.server), createClientAuth({ kit: kits.client, renewAt: false }).login(good.client)]);
    expect(good.server.identifiedAs).toBe('site-1');
    const stale = await tryLogin(auth, () => Date.now() - 3_600_000);
    expect(stale.server.status).toBe('rejected');
    expect(stale.pair.server.identifiedAs).toBeUndefined();
  });
});
