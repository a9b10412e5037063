import { isFlareError } from '@flare/core';
import type { Kit } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { createHash, randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { jobTrustFromKit, signJobBundle } from '../src/protocol/job-trust.js';
import { outgoing } from '../src/protocol/messages.js';
import { certificateIdentity, connectToServer, linkToServer, listenForParticipants } from '../src/protocol/network.js';
import { ServerEngine } from '../src/server/engine.js';
import { ClientEngine } from '../src/site/engine.js';
import type { SitePolicy } from '../src/site/policy.js';
import { auditRecorder, bundle, jobDefinition, learnerFactory, sitePolicy, tempDir, until , closedAfterEach, provisionKits } from './helpers.js';

const PROJECT = testProjectYaml({ name: 'rt-net', sites: [['site-1', 'org1'], ['site-2', 'org2']], admins: [['admin@nvidia.com', 'nvidia', 'project_admin']], fields: { description: 'runtime network test' } });

let kits: Map<string, Kit>;
const open = closedAfterEach();

beforeAll(async () => {
  kits = await provisionKits(PROJECT);
});

async function serve(authenticate?: typeof certificateIdentity): Promise<{ server: ServerEngine; port: number }> {
  const listener = await listenForParticipants({ kit: kits.get('localhost')!, port: 0, ...(authenticate === undefined ? {} : { authenticate }) });
  const server = await ServerEngine.start({ name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true, limits: { deployWaitMs: 100, schedulerIntervalMs: 50 } });
  open.push(server);
  return { server, port: listener.port };
}

/** A site over the real transport (linkToServer: @flare/transport's reconnecting client + @flare/auth). */
async function siteOver(n: number, port: number, policy: SitePolicy = sitePolicy()): Promise<ClientEngine> {
  const kit = kits.get(`site-${n}`)!;
  const engine = await ClientEngine.start({
    site: { name: kit.participant.name, org: kit.participant.org },
    link: linkToServer({ kit, targets: [{ host: '127.0.0.1', port }], backoff: { initialMs: 50, maxMs: 200 } }),
    policy: { ...policy, jobTrust: jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem }) },
    learners: new Map([['towards', learnerFactory(n)]]),
    filters: new Map(),
    workspace: await tempDir(),
  });
  open.push(engine);
  await engine.registered(20_000);
  return engine;
}

describe('runtime over @flare/transport mTLS + @flare/auth sessions', () => {
  it('runs a 2-site job end to end; identities are the authenticated kit names', async () => {
    const { server, port } = await serve();
    const targets = [{ host: '127.0.0.1', port }];
    for (const n of [1, 2]) await siteOver(n, port);
    const admin = new AdminClient(await connectToServer({ kit: kits.get('admin@nvidia.com')!, targets }), { signer: kits.get('admin@nvidia.com')! });
    open.push({ close: async () => admin.close() });
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['site-1', 'site-2'], rounds: 2 })));
    const rec = await server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.submitter).toEqual({ name: 'admin@nvidia.com', org: 'nvidia', role: 'project_admin' });
    expect(rec.history[1]!.contributors).toEqual(['site-1', 'site-2']);
    expect(server.registry.get('site-2')?.org).toBe('org2');
  });

  it('a site over the real transport waits for a server that is not there yet, and registers when it starts', async () => {
    const probe = await listenForParticipants({ kit: kits.get('localhost')!, port: 0 });
    const port = probe.port;
    await probe.close();
    const kit = kits.get('site-1')!;
    const engine = await ClientEngine.start({
      site: { name: kit.participant.name, org: kit.participant.org },
      link: linkToServer({ kit, targets: [{ host: '127.0.0.1', port }], backoff: { initialMs: 50, maxMs: 200 } }),
      policy: sitePolicy(),
      learners: new Map(),
      filters: new Map(),
      workspace: await tempDir(),
    });
    open.push(engine);
    const listener = await listenForParticipants({ kit: kits.get('localhost')!, port });
    const server = await ServerEngine.start({ name: 'localhost', org: 'nvidia', workspace: await tempDir(), listener, authorize: () => true });
    open.push(server);
    await engine.registered(20_000);
    expect(server.registry.names()).toEqual(['site-1']);
  });

  it('a link that may not wait longer gives up with E_RUNTIME_SERVER_UNREACHABLE naming the last error', async () => {
    const kit = kits.get('site-1')!;
    const link = linkToServer({ kit, targets: [{ host: '127.0.0.1', port: 1 }], backoff: { initialMs: 20, maxMs: 50 }, giveUpAfterMs: 300 });
    const error = await new Promise<Error>((resolve) => link.onGiveUp(resolve));
    await link.stop();
    expect(isFlareError(error, 'E_RUNTIME_SERVER_UNREACHABLE')).toBe(true);
    expect(error.message).toMatch(/E_TRANSPORT_CONNECT/);
  });

  it('certificateIdentity (mTLS only) also works and names the peer from its certificate', async () => {
    const { server, port } = await serve(certificateIdentity);
    const kit = kits.get('site-1')!;
    const ch = await connectToServer({ kit, targets: [{ host: '127.0.0.1', port }], authenticate: certificateIdentity });
    expect(ch.peer).toMatchObject({ name: 'localhost', org: 'nvidia', type: 'server', serial: expect.stringMatching(/^[0-9a-f]+$/) as unknown });
    ch.close();
    void server;
  });

  it("refuses a server kit presented by a site's dialer and a wrong server port (connection errors carry codes)", async () => {
    const { port } = await serve();
    const err = await connectToServer({ kit: kits.get('site-1')!, targets: [{ host: '127.0.0.1', port: 1 }], connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(isFlareError(err)).toBe(true);
    void port;
  });
  for (const [what, signer, expected] of [
    ['signed by the submitter: every site verifies it and runs the job', 'admin@nvidia.com', 'FINISHED'],
    ["signed with a site's kit key: every site refuses it (E_POLICY_JOB_SIGNER: not an admin certificate)", 'site-2', 'FAILED'],
  ] as const) {
    it(`BYOC ${what}`, async () => {
      const { server, port } = await serve();
      const targets = [{ host: '127.0.0.1', port }];
      for (const n of [1, 2]) await siteOver(n, port, sitePolicy({ byocConsent: true }));
      const adminKit = kits.get('admin@nvidia.com')!;
      const files = new Map([['train.py', new TextEncoder().encode('print("hello")\n')]]);
      const id = randomUUID();
      const signed = signJobBundle(kits.get(signer)!, bundle(jobDefinition({ deploy: ['site-1', 'site-2'], rounds: 1 }), files), id);
      const admin = new AdminClient(await connectToServer({ kit: adminKit, targets }), { signer: adminKit });
      open.push({ close: async () => admin.close() });
      expect(await admin.submit(signed, { id })).toBe(id);
      const rec = await server.waitForJob(id, 20_000);
      expect(rec.status).toBe(expected);
      if (expected === 'FAILED') expect(rec.refused['site-1']).toMatch(/^E_POLICY_JOB_SIGNER/);
    });
  }
});

describe('what @flare/auth refuses after login is audited (issue #14.15, #14.5)', () => {
  it('a second login of the same site kit replaces the first session: session_replaced (E_AUTH_SESSION_REPLACED) in the server audit', async () => {
    const audit = auditRecorder('srv');
    const listener = await listenForParticipants({ kit: kits.get('localhost')!, port: 0, audit: audit.hook });
    open.push(listener);
    listener.onChannel(() => undefined);
    const targets = [{ host: '127.0.0.1', port: listener.port }];
    const first = await connectToServer({ kit: kits.get('site-1')!, targets });
    open.push({ close: async () => first.close() });
    const closed = new Promise<void>((r) => first.onClose(() => r()));
    const second = await connectToServer({ kit: kits.get('site-1')!, targets });
    open.push({ close: async () => second.close() });
    await closed;
    const replaced = await until(() => audit.events.find((e) => e.action === 'session_replaced'));
    expect(replaced).toMatchObject({ user: 'site-1', data: { code: 'E_AUTH_SESSION_REPLACED' } });
  });
});

describe('runtime channels over the real transport: session binding and message size', () => {
  async function pair(limits?: { maxMessageBytes: number }): Promise<{ server: PeerChannel; client: PeerChannel }> {
    const listener = await listenForParticipants({ kit: kits.get('localhost')!, port: 0, ...(limits === undefined ? {} : { limits }) });
    open.push(listener);
    const accepted = new Promise<PeerChannel>((resolve) => listener.onChannel(resolve));
    const client = await connectToServer({ kit: kits.get('site-1')!, targets: [{ host: '127.0.0.1', port: listener.port }] });
    open.push({ close: async () => client.close() });
    return { server: await accepted, client };
  }

  it('both ends of an @flare/auth session export the same keying material (attestation nonces derive from it), distinct per label', async () => {
    const { server, client } = await pair();
    expect(server.peer).toMatchObject({ name: 'site-1', org: 'org1', type: 'client' });
    const a = client.exportKeyingMaterial!('flare attestation', 64);
    expect(Buffer.from(server.exportKeyingMaterial!('flare attestation', 64)).equals(Buffer.from(a))).toBe(true);
    expect(Buffer.from(client.exportKeyingMaterial!('another label', 64)).equals(Buffer.from(a))).toBe(false);
    // Another connection of the same kit is another session: other keying material.
    const second = await pair();
    expect(Buffer.from(second.client.exportKeyingMaterial!('flare attestation', 64)).equals(Buffer.from(a))).toBe(false);
  });

  it('carries a 96 MiB model payload (an encrypted update of ~2.4M parameters, above core\'s 64 MiB frame limit) whole', async () => {
    const { server, client } = await pair();
    const size = 96 * 1024 * 1024;
    const got = new Promise<Uint8Array>((resolve) => server.onMessage((_h, p) => resolve(p)));
    const payload = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) payload[i] = (i >>> 12) & 0xff;
    await client.send(outgoing({ t: 'heartbeat' }), payload);
    const received = await got;
    expect(received.byteLength).toBe(size);
    expect(createHash('sha256').update(received).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
  }, 60_000);

  it('refuses a message above the endpoint\'s maxMessageBytes before allocating it (E_TRANSPORT_MESSAGE_TOO_LARGE)', async () => {
    const { server, client } = await pair({ maxMessageBytes: 1024 * 1024 });
    let delivered = false;
    server.onMessage(() => {
      delivered = true;
    });
    const closed = new Promise<Error | undefined>((resolve) => client.onClose(resolve));
    await client.send(outgoing({ t: 'heartbeat' }), new Uint8Array(2 * 1024 * 1024)).catch(() => undefined);
    const reason = await closed;
    expect(delivered).toBe(false);
    expect(isFlareError(reason, 'E_TRANSPORT_MESSAGE_TOO_LARGE')).toBe(true);
  });
});
