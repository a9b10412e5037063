// Before a peer has proven who it is (#14.6): sockets in the TLS handshake or the upgrade, and upgraded
// connections that have not logged in, sit in pools with a total and a per-address cap; the oldest anonymous
// entry makes room for a newcomer; one that proved its identity is never displaced by anonymous ones.
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import type { FlareError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Pool, addressKey } from '../src/admission.js';
import { dial, listen, type Connection, type Refusal, type ServerEndpoint, type ServerOptions } from '../src/index.js';
import { testPki, within } from './certs.js';

describe('addressKey', () => {
  it('IPv4 as is (also IPv4-mapped); IPv6 by its /64 prefix, however it is written', () => {
    expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0db8:0000:0001:ffff:0:0:9')).toBe('2001:db8:0:1::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});

describe('Pool', () => {
  const make = (total: number, perAddress: number, perIdentity = 2): { pool: Pool<string>; refused: Array<[string, string]> } => {
    const refused: Array<[string, string]> = [];
    const pool = new Pool<string>('test entries', total, perAddress, perIdentity, (item, error) => refused.push([item, error.code]));
    return { pool, refused };
  };
  const add = (pool: Pool<string>, item: string, address: string): boolean => {
    if (!pool.makeRoom(address)) return false;
    pool.add(item, address);
    return true;
  };

  it('per address: the oldest anonymous entry of that address makes room; other addresses are untouched', () => {
    const { pool, refused } = make(10, 2);
    add(pool, 'b1', '10.0.0.2');
    add(pool, 'a1', '10.0.0.1');
    add(pool, 'a2', '10.0.0.1');
    add(pool, 'a3', '10.0.0.1');
    expect(refused).toEqual([['a1', 'E_TRANSPORT_CONNECTION_LIMIT']]);
    expect(pool.size).toBe(3);
  });

  it('in all: the oldest anonymous entry anywhere makes room', () => {
    const { pool, refused } = make(2, 10);
    add(pool, 'a', '10.0.0.1');
    add(pool, 'b', '10.0.0.2');
    add(pool, 'c', '10.0.0.3');
    expect(refused.map((r) => r[0])).toEqual(['a']);
  });

  it('an identified entry is never displaced by anonymous ones: a pool full of them refuses the newcomer', () => {
    const { pool, refused } = make(2, 2);
    add(pool, 'a', '10.0.0.1');
    add(pool, 'b', '10.0.0.1');
    pool.identify('a', 'site-1');
    expect(add(pool, 'c', '10.0.0.1')).toBe(true);
    expect(refused.map((r) => r[0])).toEqual(['b']);
    pool.identify('c', 'site-2');
    expect(add(pool, 'd', '10.0.0.1')).toBe(false);
    expect(pool.size).toBe(2);
  });

  it('per identity: the newest login in progress wins', () => {
    const { pool, refused } = make(10, 10, 2);
    for (const x of ['a', 'b', 'c']) {
      add(pool, x, '10.0.0.1');
      pool.identify(x, 'site-1');
    }
    expect(refused).toEqual([['a', 'E_TRANSPORT_CONNECTION_LIMIT']]);
    pool.remove('b');
    pool.remove('c');
    expect(pool.size).toBe(0);
  });
});

const pki = testPki();
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function server(options: Partial<ServerOptions<string>> & Pick<ServerOptions<string>, 'security'>): Promise<{ endpoint: ServerEndpoint<string>; refusals: Refusal[] }> {
  const endpoint = await listen<string>({ port: 0, host: '0.0.0.0', ...options });
  cleanup.push(() => endpoint.close());
  const refusals: Refusal[] = [];
  endpoint.on('refused', (r) => refusals.push(r));
  return { endpoint, refusals };
}

/** A login that waits for the client's one message naming itself, and identifies the connection by it. */
const namedLogin = async (c: Connection<string>): Promise<string> => {
  const m = await c.receive();
  const name = String(m.header['name']);
  c.identified(name);
  if (m.header['finish'] !== true) await c.receive();
  return name;
};

const connect = (port: number, localAddress = '127.0.0.1'): Promise<Connection<undefined>> =>
  dial({ security: 'clear', targets: [{ host: '127.0.0.1', port }], localAddress }).then((c) => {
    cleanup.push(() => c.close());
    return c;
  });

const codes = (refusals: readonly Refusal[], code: string): number => refusals.filter((r) => r.error.code === code).length;

/** Resolves once `endpoint` has reported `n` refusals with `code` ('any': of any code), those in `refusals` included. */
function refusalsReach(endpoint: ServerEndpoint<string>, refusals: readonly Refusal[], code: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if ((code === 'any' ? refusals.length : codes(refusals, code)) < n) return;
      endpoint.off('refused', check);
      resolve();
    };
    endpoint.on('refused', check);
    check();
  });
}

describe('the server before login (#14.6)', () => {
  it('connections that never log in from one address displace each other; a prompt login from the same address gets in', async () => {
    // A long login deadline: every idle connection here is displaced, none times out, however slow the machine.
    const { endpoint, refusals } = await server({ security: 'clear', authenticate: namedLogin, limits: { maxPendingLoginsPerAddress: 4, loginTimeoutMs: 120_000 } });
    const idle: Array<Connection<undefined>> = [];
    for (let i = 0; i < 20; i++) idle.push(await connect(endpoint.port));
    await within(refusalsReach(endpoint, refusals, 'E_TRANSPORT_CONNECTION_LIMIT', 16));
    expect(endpoint.pendingLoginCount).toBe(4);
    expect(codes(refusals, 'E_TRANSPORT_CONNECTION_LIMIT')).toBe(16);
    expect((await idle[0]!.closed).error?.code).toBe('E_TRANSPORT_CONNECTION_LIMIT');
    const accepted = once(endpoint as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection<string>]>;
    const admin = await connect(endpoint.port);
    await admin.send({ name: 'admin', finish: true });
    const [conn] = await within(accepted);
    expect(conn.auth).toBe('admin');
  });

  it('a flood from one address leaves another address alone', async () => {
    const { endpoint } = await server({ security: 'clear', authenticate: namedLogin, limits: { maxPendingLoginsPerAddress: 4 } });
    const other = await connect(endpoint.port, '127.0.0.2');
    for (let i = 0; i < 12; i++) await connect(endpoint.port, '127.0.0.1');
    const accepted = once(endpoint as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection<string>]>;
    await other.send({ name: 'site-9', finish: true });
    expect((await within(accepted))[0].auth).toBe('site-9');
  });

  it('a login that proved who it is is not displaced by anonymous ones; at most 2 per identity here (E_TRANSPORT_CONNECTION_LIMIT)', async () => {
    const { endpoint } = await server({ security: 'clear', authenticate: namedLogin, limits: { maxPendingLoginsPerAddress: 3, maxPendingLoginsPerIdentity: 2 } });
    const proven = await connect(endpoint.port);
    await proven.send({ name: 'site-1' });
    for (let i = 0; i < 10; i++) await connect(endpoint.port);
    const accepted = once(endpoint as unknown as NodeJS.EventEmitter, 'connection') as Promise<[Connection<string>]>;
    await proven.send({ done: true });
    expect((await within(accepted))[0].auth).toBe('site-1');
    // Three logins in progress of one participant: the oldest goes.
    const same = [await connect(endpoint.port, '127.0.0.3'), await connect(endpoint.port, '127.0.0.4'), await connect(endpoint.port, '127.0.0.5')];
    for (const c of same) await c.send({ name: 'site-2' });
    expect((await within(same[0]!.closed)).error?.code).toBe('E_TRANSPORT_CONNECTION_LIMIT');
  });

  it('sockets that never complete TLS are cut at the handshake deadline (E_TRANSPORT_HANDSHAKE_TIMEOUT) and capped per address', async () => {
    const { endpoint, refusals } = await server({
      security: 'mtls',
      tls: { certPem: pki.serverCertPem, privateKey: pki.serverKeyPem, caPem: pki.caPem },
      limits: { handshakeTimeoutMs: 300, maxHandshakesPerAddress: 5 },
    });
    const sockets: Socket[] = [];
    for (let i = 0; i < 12; i++) {
      const s = netConnect({ host: '127.0.0.1', port: endpoint.port });
      s.on('error', () => undefined);
      cleanup.push(() => s.destroy());
      await once(s, 'connect');
      sockets.push(s);
      // Never more than 5 from one address in the handshake at once.
      expect(endpoint.handshakeCount).toBeLessThanOrEqual(5);
    }
    await within(Promise.all(sockets.filter((s) => !s.closed).map((s) => once(s, 'close'))), 60_000);
    await within(refusalsReach(endpoint, refusals, 'any', 12));
    // The last 5 are never displaced (nothing comes after them): they reach the deadline; earlier ones were
    // displaced, or timed out first on a slow machine.
    const timedOut = codes(refusals, 'E_TRANSPORT_HANDSHAKE_TIMEOUT');
    expect(timedOut).toBeGreaterThanOrEqual(5);
    expect(timedOut + codes(refusals, 'E_TRANSPORT_CONNECTION_LIMIT')).toBe(12);
    expect(endpoint.handshakeCount).toBe(0);
    // A client that completes TLS and the upgrade in time is not affected.
    const ok = await dial({ security: 'mtls', targets: [{ host: '127.0.0.1', port: endpoint.port }], tls: { caPem: pki.caPem, certPem: pki.clientCertPem, privateKey: pki.clientKeyPem } });
    cleanup.push(() => ok.close());
    expect(ok.tls?.protocol).toBe('TLSv1.3');
  });

  it('logged-in connections fill the server: a newcomer is refused at the upgrade (E_TRANSPORT_CONNECTION_LIMIT)', async () => {
    const { endpoint } = await server({ security: 'clear', limits: { maxConnections: 2 } });
    await connect(endpoint.port);
    await connect(endpoint.port);
    const error = (await connect(endpoint.port).catch((e: unknown) => e)) as FlareError;
    expect(error.code).toBe('E_TRANSPORT_CONNECTION_LIMIT');
  });
});
