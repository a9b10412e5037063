// Relayed logins: the relay path a client signs into its hello, checked at each relay (checkRelayedLogin) and at
// the server (its hop's TLS certificate must be the first relay of the path). Real kits, in-memory channels.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '@flare/pki';
import { checkRelayedLogin, createClientAuth, createServerAuth, type AuthHeader, type Session } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { channelPair } from './helpers.js';

const PROJECT = `api_version: 3
name: auth-relay
description: relayed logins
participants:
  - name: server1
    type: server
    org: nvidia
  - name: relay-top
    type: relay
    org: nvidia
    listening_host: relay-top.example
  - name: relay-1
    type: relay
    org: nvidia
    listening_host: relay-1.example
    parent: relay-top
  - name: site-1
    type: client
    org: nvidia
    parent: relay-1
  - name: site-2
    type: client
    org: acme
`;

let k: Record<'server' | 'top' | 'r1' | 'site1' | 'site2', Kit>;
beforeAll(async () => {
  const result = await provision(parseProject(PROJECT), { workspace: await mkdtemp(join(tmpdir(), 'flare-auth-relay-')) });
  const load = (n: string): Promise<Kit> => loadKit(result.kits.find((x) => x.name === n)!.dir);
  k = { server: await load('server1'), top: await load('relay-top'), r1: await load('relay-1'), site1: await load('site-1'), site2: await load('site-2') };
});

/** The hello a client sends (its login then waits for an answer that never comes). */
async function helloOf(kit: Kit, via?: string[]): Promise<AuthHeader> {
  const { client } = channelPair();
  void createClientAuth({ kit, ...(via === undefined ? {} : { via }) })
    .login(client)
    .catch(() => undefined);
  await new Promise((r) => setImmediate(r));
  const hello = client.sent[0]!.header;
  void client.close();
  return hello;
}

const tlsOf = (peerCertificatePem: string | undefined) => ({ tls: { peerCertificatePem, exportKeyingMaterial: () => new Uint8Array(32) } });

describe('relayed logins', () => {
  it('the client signs its relay path into the hello and turns channel binding off', async () => {
    const hello = await helloOf(k.site1, ['relay-top', 'relay-1']);
    expect(hello['via']).toEqual(['relay-top', 'relay-1']);
    expect(hello['cb']).toBe(false);
  });

  const serialOf = (kit: Kit): string => verifyCertificate(kit.certPem, { rootCaPem: kit.rootCaPem }).serial;

  it('checkRelayedLogin accepts the next hop down the signed path, site or relay, and names the hop certificate', async () => {
    const hello = await helloOf(k.site1, ['relay-top', 'relay-1']);
    const trust = { rootCaPem: k.top.rootCaPem };
    expect(checkRelayedLogin(hello, tlsOf(k.site1.certPem), { ...trust, relay: 'relay-1', path: ['relay-top'] })).toEqual({ name: 'site-1', via: ['relay-top', 'relay-1'], hopSerial: serialOf(k.site1) });
    const fromRelay = checkRelayedLogin(hello, tlsOf(k.r1.certPem), { ...trust, relay: 'relay-top', path: [] });
    expect(fromRelay.via).toEqual(['relay-top', 'relay-1']);
    // The relay below's serial: a newer CRL listing it cuts what relay-top carries for it.
    expect(fromRelay.hopSerial).toBe(serialOf(k.r1));
  });

  it('checkRelayedLogin refuses a path not through this relay, a skipped relay, another TLS identity, no login (codes)', async () => {
    const trust = { rootCaPem: k.top.rootCaPem };
    const hello = await helloOf(k.site1, ['relay-top', 'relay-1']);
    await expectFlareCodeAsync(() => checkRelayedLogin(hello, tlsOf(k.site1.certPem), { ...trust, relay: 'relay-1', path: [] }), 'E_AUTH_RELAY_PATH');
    const direct = await helloOf(k.site2);
    await expectFlareCodeAsync(() => checkRelayedLogin(direct, tlsOf(k.site2.certPem), { ...trust, relay: 'relay-top', path: [] }), 'E_AUTH_RELAY_PATH');
    // relay-top receives site-1's login from site-1 itself: relay-1 was skipped.
    await expectFlareCodeAsync(() => checkRelayedLogin(hello, tlsOf(k.site1.certPem), { ...trust, relay: 'relay-top', path: [] }), 'E_AUTH_RELAY_PATH');
    // site-2 forwards site-1's login.
    await expectFlareCodeAsync(() => checkRelayedLogin(hello, tlsOf(k.site2.certPem), { ...trust, relay: 'relay-1', path: ['relay-top'] }), 'E_AUTH_TLS_IDENTITY');
    await expectFlareCodeAsync(() => checkRelayedLogin(hello, tlsOf(undefined), { ...trust, relay: 'relay-1', path: ['relay-top'] }), 'E_AUTH_RELAY_PATH');
    await expectFlareCodeAsync(() => checkRelayedLogin({ type: 'update' }, tlsOf(k.site1.certPem), { ...trust, relay: 'relay-1', path: ['relay-top'] }), 'E_AUTH_NOT_LOGGED_IN');
    await expectFlareCodeAsync(() => checkRelayedLogin({ ...hello, via: 'relay-1' }, tlsOf(k.site1.certPem), { ...trust, relay: 'relay-1', path: ['relay-top'] }), 'E_AUTH_HANDSHAKE');
  });

  async function loginThrough(clientCert: string | undefined, via: string[] | undefined): Promise<Session> {
    const exporter = new Uint8Array(32).fill(7);
    const { client, server } = channelPair({ client: exporter, server: exporter, ...(clientCert === undefined ? {} : { clientCert }) });
    const auth = createServerAuth({ kit: k.server });
    const accepted = auth.accept(server);
    const [session] = await Promise.all([accepted, createClientAuth({ kit: k.site1, ...(via === undefined ? {} : { via }) }).login(client)]);
    return session;
  }

  it('the server accepts a login whose hop is the first relay of the signed path, and records the path', async () => {
    const session = await loginThrough(k.top.certPem, ['relay-top', 'relay-1']);
    expect(session.peer).toMatchObject({ name: 'site-1', via: ['relay-top', 'relay-1'] });
    expect(session.channelBound).toBe(false);
    // The hop relay's certificate serial rides with the session: revoking relay-top cuts it.
    expect(session.relaySerial).toBe(serialOf(k.top));
    expect(session.peerSerial).toBe(serialOf(k.site1));
  });

  it('the server refuses a login through another relay, directly with a path, or relayed without a path (codes)', async () => {
    await expectFlareCodeAsync(loginThrough(k.r1.certPem, ['relay-top', 'relay-1']), 'E_AUTH_RELAY_PATH');
    await expectFlareCodeAsync(loginThrough(k.site1.certPem, ['relay-top', 'relay-1']), 'E_AUTH_RELAY_PATH');
    await expectFlareCodeAsync(loginThrough(undefined, ['relay-top', 'relay-1']), 'E_AUTH_RELAY_PATH');
    await expectFlareCodeAsync(loginThrough(k.top.certPem, undefined), 'E_AUTH_TLS_IDENTITY');
  });
});
