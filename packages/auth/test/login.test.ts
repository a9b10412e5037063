import { randomBytes } from 'node:crypto';
import { PolicyError, type FlareError } from '@flare/core';
import { revoke, verifyCertificate } from '@flare/pki';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientAuth, createServerAuth, type ClientAuthOptions, type ServerAuthOptions, type Session } from '../src/index.js';
import { expectFlareCodeAsync } from '@flare/core/testing';
import { channelPair, makeKits, type Kits, type MemoryChannel } from './helpers.js';

let kits: Kits;
let other: Kits;
beforeAll(async () => {
  [kits, other] = await Promise.all([makeKits('authtest'), makeKits('otherproject')]);
});

interface Outcome {
  server: PromiseSettledResult<Session>;
  client: PromiseSettledResult<Session>;
  pair: { client: MemoryChannel; server: MemoryChannel };
}

async function run(server: Partial<ServerAuthOptions> = {}, client: Partial<ClientAuthOptions> = {}, pair = channelPair()): Promise<Outcome> {
  const sa = createServerAuth({ kit: kits.server, ...server });
  const ca = createClientAuth({ kit: kits.client, renewAt: false, ...client });
  // The transport closes a connection whose authenticate hook throws, with the error's code: do the same.
  const s = sa.accept(pair.server).catch(async (e: FlareError) => {
    await pair.server.close(e);
    throw e;
  });
  const c = ca.login(pair.client).catch(async (e: FlareError) => {
    await pair.client.close(e);
    throw e;
  });
  const [sr, cr] = await Promise.allSettled([s, c]);
  return { server: sr, client: cr, pair };
}

const codeOf = (r: PromiseSettledResult<unknown>): string | undefined => (r.status === 'rejected' ? (r.reason as FlareError).code : undefined);

describe('login handshake', () => {
  it('authenticates both sides: peers from certificates, same session id, transcript and exported keys', async () => {
    const { server, client } = await run();
    expect(server.status).toBe('fulfilled');
    expect(client.status).toBe('fulfilled');
    const s = (server as PromiseFulfilledResult<Session>).value;
    const c = (client as PromiseFulfilledResult<Session>).value;
    expect(s.peer).toEqual({ name: 'site-1', org: 'nvidia', type: 'client' });
    expect(c.peer).toEqual({ name: 'server1', org: 'nvidia', type: 'server' });
    expect(s.id).toBe(c.id);
    expect(Buffer.from(s.transcriptHash).equals(Buffer.from(c.transcriptHash))).toBe(true);
    expect(s.transcriptHash.length).toBe(32);
    const a = s.exportKeyingMaterial('flare-ts/cc-attest nonce', 64);
    expect(Buffer.from(a).equals(Buffer.from(c.exportKeyingMaterial('flare-ts/cc-attest nonce', 64)))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c.exportKeyingMaterial('another label', 64)))).toBe(false);
    expect(s.channelBound).toBe(false);
  });

  it("each side's session carries the serial of the certificate its peer logged in with (what a CRL lists)", async () => {
    const { server, client } = await run();
    const serialOf = (pem: string): string => verifyCertificate(pem, { rootCaPem: kits.client.rootCaPem }).serial;
    expect((server as PromiseFulfilledResult<Session>).value.peerSerial).toBe(serialOf(kits.client.certPem));
    expect((client as PromiseFulfilledResult<Session>).value.peerSerial).toBe(serialOf(kits.server.certPem));
    expect(serialOf(kits.client.certPem)).not.toBe(serialOf(kits.server.certPem));
  });

  it('logs in an admin with the same handshake; the role comes from its certificate', async () => {
    const { server } = await run({}, { kit: kits.admin });
    expect((server as PromiseFulfilledResult<Session>).value.peer).toEqual({ name: 'admin@nvidia.com', org: 'nvidia', type: 'admin', role: 'project_admin' });
  });

  it('two logins get different sessions, transcripts and keys', async () => {
    const one = await run();
    const two = await run();
    const a = (one.client as PromiseFulfilledResult<Session>).value;
    const b = (two.client as PromiseFulfilledResult<Session>).value;
    expect(a.id).not.toBe(b.id);
    expect(Buffer.from(a.exportKeyingMaterial('x', 32)).equals(Buffer.from(b.exportKeyingMaterial('x', 32)))).toBe(false);
  });

  it('binds the session to TLS when TLS is end-to-end (same exporter on both sides)', async () => {
    const ekm = randomBytes(32);
    const { server, client } = await run({}, {}, channelPair({ client: ekm, server: ekm }));
    expect((server as PromiseFulfilledResult<Session>).value.channelBound).toBe(true);
    expect((client as PromiseFulfilledResult<Session>).value.channelBound).toBe(true);
  });

  it('refuses when the TLS exporters differ: TLS was terminated in between (E_AUTH_CHANNEL_BINDING)', async () => {
    const { server, client } = await run({}, {}, channelPair({ client: randomBytes(32), server: randomBytes(32) }));
    expect(codeOf(server)).toBe('E_AUTH_CHANNEL_BINDING');
    expect(codeOf(client)).toBe('E_AUTH_CHANNEL_BINDING');
  });

  it('a server that requires channel binding refuses a client that does not bind (E_AUTH_CHANNEL_BINDING)', async () => {
    const ekm = randomBytes(32);
    const { server } = await run({ channelBinding: 'require' }, { channelBinding: 'off' }, channelPair({ client: ekm, server: ekm }));
    expect(codeOf(server)).toBe('E_AUTH_CHANNEL_BINDING');
  });

  it('passes site credentials to authorizeLogin and sends its refusal code to the client', async () => {
    const seen: unknown[] = [];
    const { server, client } = await run(
      {
        authorizeLogin: (peer, cred) => {
          seen.push([peer.name, cred]);
          throw new PolicyError('E_POLICY_DENIED', 'no token');
        },
      },
      { credentials: () => ({ oidc: 'eyJhbGciOi.test.token' }) },
    );
    expect(seen).toEqual([['site-1', { oidc: 'eyJhbGciOi.test.token' }]]);
    expect(codeOf(server)).toBe(codeOf(client));
  });

  it('a hook that throws something else refuses with E_AUTH_REFUSED', async () => {
    const { server, client } = await run({ authorizeLogin: () => Promise.reject(new Error('idp down')) });
    expect(codeOf(server)).toBe('E_AUTH_REFUSED');
    expect(codeOf(client)).toBe('E_AUTH_REFUSED');
  });
});

describe('login refusals (each with its code)', () => {
  it('wrong CA: a client of another project (E_CERT_UNTRUSTED)', async () => {
    const { server, client } = await run({}, { kit: other.client });
    expect(codeOf(server)).toBe('E_CERT_UNTRUSTED');
    expect(codeOf(client)).toBe('E_CERT_UNTRUSTED');
  });

  it('wrong CA: a server of another project, as the client sees it (E_CERT_UNTRUSTED)', async () => {
    const { client } = await run({ kit: other.server, allowTypes: ['client'], crl: () => undefined }, {});
    // The other server cannot verify our client either; whichever side refuses first, the code is untrusted.
    expect(codeOf(client)).toBe('E_CERT_UNTRUSTED');
  });

  it('expired client certificate (E_CERT_EXPIRED)', async () => {
    const later = Date.now() + 400 * 86_400_000;
    const { server } = await run({ now: () => later, crl: () => undefined }, { now: () => later });
    expect(codeOf(server)).toBe('E_CERT_EXPIRED');
  });

  it('not-yet-valid certificate (E_CERT_NOT_YET_VALID)', async () => {
    const earlier = Date.now() - 2 * 86_400_000;
    const { server } = await run({ now: () => earlier, crl: () => undefined }, { now: () => earlier });
    expect(codeOf(server)).toBe('E_CERT_NOT_YET_VALID');
  });

  it('revoked certificate: the CRL is checked at login (E_CERT_REVOKED)', async () => {
    const { crlPem } = await revoke({ projectDir: kits.projectDir, name: 'site-2' });
    const { server, client } = await run({ crl: () => crlPem }, { kit: kits.client2 });
    expect(codeOf(server)).toBe('E_CERT_REVOKED');
    expect(codeOf(client)).toBe('E_CERT_REVOKED');
    const fine = await run({ crl: () => crlPem });
    expect(fine.server.status).toBe('fulfilled');
  });

  it('CN different from the claimed name (E_CERT_NAME_MISMATCH)', async () => {
    const liar = { ...kits.client, participant: { ...kits.client.participant, name: 'site-2' } };
    const { server } = await run({}, { kit: liar });
    expect(codeOf(server)).toBe('E_CERT_NAME_MISMATCH');
  });

  it('a client certificate presented as the server (E_CERT_WRONG_TYPE)', async () => {
    const { client } = await run({ kit: kits.client2 }, {});
    expect(codeOf(client)).toBe('E_CERT_WRONG_TYPE');
  });

  it('a server certificate presented as a client (E_CERT_WRONG_TYPE)', async () => {
    const { server } = await run({}, { kit: kits.server });
    expect(codeOf(server)).toBe('E_CERT_WRONG_TYPE');
  });

  it('a server whose name is not the one pinned in the kit (E_CERT_NAME_MISMATCH)', async () => {
    const pinned = { ...kits.client, server: { ...kits.client.server, name: 'server2' } };
    const { client } = await run({}, { kit: pinned });
    expect(codeOf(client)).toBe('E_CERT_NAME_MISMATCH');
  });

  it('a login signed by another key than the certificate (E_AUTH_SIGNATURE)', async () => {
    const forged = { ...kits.client, certPem: kits.client2.certPem, participant: kits.client2.participant };
    // createClientAuth checks the kit's key pair first (E_AUTH_KEY) ...
    await expectFlareCodeAsync(() => createClientAuth({ kit: forged }), 'E_AUTH_KEY');
    // ... so forge on the wire: site-1 signs, the hello claims site-2's certificate.
    const pair = channelPair();
    pair.client.wire = (f) => (f.header['$auth'] === 'hello' ? { ...f, header: { ...f.header, name: 'site-2', cert: kits.client2.certPem } } : f);
    const { server } = await run({}, {}, pair);
    expect(codeOf(server)).toBe('E_AUTH_SIGNATURE');
  });

  it('a stale login timestamp (E_AUTH_STALE)', async () => {
    const { server } = await run({}, { now: () => Date.now() - 10 * 60_000 });
    expect(codeOf(server)).toBe('E_AUTH_STALE');
  });

  it('a replayed login (E_AUTH_REPLAY)', async () => {
    const pair = channelPair();
    let captured: Parameters<MemoryChannel['inject']>[0] | undefined;
    pair.client.wire = (f) => ((captured ??= f), f);
    await run({}, {}, pair);
    const sb = createServerAuth({ kit: kits.server });
    const p1 = channelPair();
    const first = sb.accept(p1.server);
    p1.server.inject(captured!);
    await expect(Promise.race([first.then(() => 'accepted', () => 'refused'), new Promise((r) => setTimeout(() => r('waiting'), 50))])).resolves.toBe('waiting');
    const p2 = channelPair();
    const second = sb.accept(p2.server);
    p2.server.inject(captured!);
    await expectFlareCodeAsync(second, 'E_AUTH_REPLAY');
    await p1.server.close();
    await first.catch(() => undefined);
  });

  it('a sealed message instead of a login (E_AUTH_NOT_LOGGED_IN) and a malformed login (E_AUTH_HANDSHAKE)', async () => {
    const sa = createServerAuth({ kit: kits.server });
    const p = channelPair();
    const r = sa.accept(p.server);
    p.server.inject({ header: { type: 'task' }, payload: new Uint8Array(0), trailer: { sid: 'x', seq: 0, ts: 0, e: 0, mac: 'y' } });
    await expectFlareCodeAsync(r, 'E_AUTH_NOT_LOGGED_IN');
    const q = channelPair();
    const r2 = sa.accept(q.server);
    q.server.inject({ header: { $auth: 'hello', v: 1, name: 'site-1' }, payload: new Uint8Array(0), trailer: undefined });
    await expectFlareCodeAsync(r2, 'E_AUTH_HANDSHAKE');
  });

  it('a participant revoked on the server cannot log in until reinstated (E_AUTH_SESSION_REVOKED)', async () => {
    const sa = createServerAuth({ kit: kits.server });
    sa.sessions.revokeParticipant('site-1');
    const ca = createClientAuth({ kit: kits.client, renewAt: false });
    const p = channelPair();
    const s = sa.accept(p.server).catch(async (e: FlareError) => (await p.server.close(e), Promise.reject(e)));
    await expectFlareCodeAsync(ca.login(p.client), 'E_AUTH_SESSION_REVOKED');
    await s.catch(() => undefined);
    sa.sessions.reinstate('site-1');
    const q = channelPair();
    const [ok] = await Promise.all([sa.accept(q.server), ca.login(q.client)]);
    expect(ok.peer.name).toBe('site-1');
  });

  it('mtls: the login certificate must be the TLS client certificate (E_AUTH_TLS_IDENTITY)', async () => {
    const ekm = randomBytes(32);
    const { server } = await run({}, {}, channelPair({ client: ekm, server: ekm, clientCert: kits.client2.certPem }));
    expect(codeOf(server)).toBe('E_AUTH_TLS_IDENTITY');
    const ok = await run({}, {}, channelPair({ client: ekm, server: ekm, clientCert: kits.client.certPem }));
    expect(ok.server.status).toBe('fulfilled');
  });

  it('mtls: the TLS certificate compares by its DER bytes, whatever the PEM line endings; a bundle is read by its first certificate (E_AUTH_TLS_IDENTITY)', async () => {
    const ekm = randomBytes(32);
    const crlf = kits.client.certPem.replace(/\n/g, '\r\n');
    expect((await run({}, {}, channelPair({ client: ekm, server: ekm, clientCert: crlf }))).server.status).toBe('fulfilled');
    const bundle = kits.client2.certPem + kits.client.certPem;
    expect(codeOf((await run({}, {}, channelPair({ client: ekm, server: ekm, clientCert: bundle }))).server)).toBe('E_AUTH_TLS_IDENTITY');
    const first = kits.client.certPem + kits.client2.certPem;
    expect((await run({}, {}, channelPair({ client: ekm, server: ekm, clientCert: first }))).server.status).toBe('fulfilled');
  });
});
