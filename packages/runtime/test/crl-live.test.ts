// A revocation takes effect on live sessions (issue #14.10): a newer root-signed CRL in the server's watched
// crl.pem cuts at once the session of every participant it revokes (audited, naming it and its serial), keeps
// the revoked one out at its next login, and reaches every connected site in a `crl` message; a site never
// takes an older CRL from the server, and the server never takes an older or foreign one from its file.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CrlStore, createCrl, createRootCa, loadCrl, loadKit, parseProject, provision, resolveProjectDir, revoke, verifyCertificate, type Crl, type Kit } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import { linkToServer, connectToServer } from '../src/protocol/network.js';
import { startAggregatingRelay } from '../src/relay/aggregate.js';
import { MAX_CRL_FILE_BYTES } from '../src/server/crl-watch.js';
import { ClientEngine } from '../src/site/engine.js';
import { TEST_ROOT, auditRecorder, closeAll, closedAfterEach, sitePolicy, startServer, startSite, tempDir, until, crlWatchingServer } from './helpers.js';

const PROJECT = testProjectYaml({
  name: 'rt_crl',
  sites: [['site-1', 'org1'], ['site-2', 'org2']],
  admins: [['admin@nvidia.com', 'nvidia', 'project_admin']],
  participants: [
    { name: 'agg-a', type: 'relay', org: 'nvidia', mode: 'aggregate', listening_host: 'localhost' },
    { name: 'site-3', type: 'client', org: 'org3', parent: 'agg-a' },
    { name: 'site-4', type: 'client', org: 'org4', parent: 'agg-a' },
  ],
  fields: { description: 'runtime CRL on live sessions' },
});

afterEach(closeAll);
const open = closedAfterEach();
let workspace: string;
let kits: Map<string, Kit>;

beforeAll(async () => {
  workspace = await tempDir();
  const r = await provision(parseProject(PROJECT), { workspace });
  kits = new Map();
  for (const k of r.kits) kits.set(k.name, await loadKit(join(r.prodDir, k.name)));
});

const serialOf = (kit: Kit): string => verifyCertificate(kit.certPem, { rootCaPem: kit.rootCaPem }).serial;

const realServer = (): ReturnType<typeof crlWatchingServer> => crlWatchingServer(kits.get('localhost')!, open);

async function realSite(name: string, port: number): Promise<{ engine: ClientEngine; crls: CrlStore; audit: ReturnType<typeof auditRecorder> }> {
  const kit = kits.get(name)!;
  const crls = await CrlStore.open({ rootCaPem: kit.rootCaPem });
  const audit = auditRecorder(name);
  const engine = await ClientEngine.start({
    site: { name: kit.participant.name, org: kit.participant.org },
    link: linkToServer({ kit, targets: [{ host: '127.0.0.1', port }], backoff: { initialMs: 50, maxMs: 200 } }),
    policy: sitePolicy(),
    learners: new Map(),
    filters: new Map(),
    workspace: await tempDir(),
    crls,
    audit: audit.hook,
  });
  open.push(engine);
  await engine.registered(30_000);
  return { engine, crls, audit };
}

describe('a CRL pushed and enforced on live sessions (issue #14.10)', () => {
  it('revoking a connected site cuts its session at once (session_revoked naming it and its serial), its next login is refused with E_CERT_REVOKED, and the other site gets the CRL', async () => {
    const { server, port, file, audit } = await realServer();
    const site1 = await realSite('site-1', port);
    const site2 = await realSite('site-2', port);
    expect(server.registry.names()).toEqual(['site-1', 'site-2']);

    const { crlPem, serials } = await revoke({ projectDir: await resolveProjectDir(workspace), name: 'site-2' });
    expect(serials).toEqual([serialOf(kits.get('site-2')!)]);
    await writeFile(file, crlPem);

    const cut = await until(() => audit.events.find((e) => e.action === 'session_revoked'), 30_000, 'session_revoked');
    expect(cut).toMatchObject({ user: 'site-2', data: { code: 'E_CERT_REVOKED', serial: serials[0], type: 'client' } });
    // The cut site reconnects, is refused at login with the revoked code and stops for good.
    await until(() => site2.engine.stopReason, 30_000, 'site-2 stopped');
    expect(site2.engine.stopReason?.code).toBe('E_CERT_REVOKED');
    expect(server.registry.names()).toEqual(['site-1']);
    // site-1 stays and keeps the newer CRL (durably, in its CrlStore).
    const updated = await until(() => site1.audit.events.find((e) => e.action === 'crl_updated'), 30_000, 'crl_updated at site-1');
    expect(updated.data).toMatchObject({ revoked: 1 });
    expect(site1.crls.current?.revoked.has(serials[0]!)).toBe(true);
    expect(audit.events.find((e) => e.action === 'crl_updated')?.data).toMatchObject({ revoked: 1 });
  });

  it('an aggregating relay keeps the newer CRL the server pushes, cuts its own revoked site and passes the CRL down to its other sites', async () => {
    const { port, file } = await realServer();
    const relayAudit = auditRecorder('agg-a');
    const k = kits.get('agg-a')!;
    const relay = await startAggregatingRelay({
      kit: k,
      port: 0,
      upstream: [{ host: '127.0.0.1', port }],
      workspace: await tempDir(),
      policy: sitePolicy(),
      filters: new Map(),
      backoff: { initialMs: 50, maxMs: 200 },
      crls: await CrlStore.open({ rootCaPem: k.rootCaPem }),
      audit: relayAudit.hook,
    });
    open.push(relay);
    await relay.upstream.registered(30_000);
    const site3 = await realSite('site-3', relay.port);
    const site4 = await realSite('site-4', relay.port);
    const { crlPem, serials } = await revoke({ projectDir: await resolveProjectDir(workspace), name: 'site-3' });
    await writeFile(file, crlPem);
    const cut = await until(() => relayAudit.events.find((e) => e.action === 'session_revoked'), 30_000, 'session_revoked at the relay');
    expect(cut).toMatchObject({ user: 'site-3', data: { code: 'E_CERT_REVOKED', serial: serials[0] } });
    await until(() => site3.engine.stopReason, 30_000, 'site-3 stopped');
    expect(site3.engine.stopReason?.code).toBe('E_CERT_REVOKED');
    await until(() => site4.audit.events.find((e) => e.action === 'crl_updated'), 30_000, 'crl_updated at site-4');
    expect(site4.crls.current?.revoked.has(serials[0]!)).toBe(true);
    expect(relay.sites()).toEqual(['site-4']);
  });

  it("an admin's live session is cut too when its certificate is revoked", async () => {
    const { port, file, audit } = await realServer();
    const kit = kits.get('admin@nvidia.com')!;
    const admin = new AdminClient(await connectToServer({ kit, targets: [{ host: '127.0.0.1', port }] }), { signer: kit });
    open.push({ close: async () => admin.close() });
    await admin.list();
    const { crlPem, serials } = await revoke({ projectDir: await resolveProjectDir(workspace), name: 'admin@nvidia.com' });
    await writeFile(file, crlPem);
    const cut = await until(() => audit.events.find((e) => e.action === 'session_revoked' && e.user === 'admin@nvidia.com'), 30_000, 'admin session_revoked');
    expect(cut.data).toMatchObject({ code: 'E_CERT_REVOKED', serial: serials[0], type: 'admin' });
    await expect(admin.list()).rejects.toThrow();
  });

  it('the server refuses an older CRL in its file (crl_refused, E_CRL_ROLLBACK) and one not signed by the project root (E_CRL_INVALID), keeping its newest', async () => {
    const { server, port, crls, file, audit } = await realServer();
    await realSite('site-1', port);
    const projectDir = await resolveProjectDir(workspace);
    // Revoking a participant again reissues the CRL under the next number.
    const older = (await revoke({ projectDir, name: 'site-2' })).crlPem;
    const newer = (await revoke({ projectDir, name: 'site-2' })).crlPem;
    const newest = loadCrl(newer, { rootCaPem: kits.get('localhost')!.rootCaPem }).crlNumber;
    await writeFile(file, newer);
    await until(() => (crls.crlNumber === newest ? true : undefined), 30_000, 'the newer CRL taken');
    await writeFile(file, older);
    const rollback = await until(() => audit.events.find((e) => e.action === 'crl_refused'), 30_000, 'crl_refused');
    expect(rollback.data).toMatchObject({ code: 'E_CRL_ROLLBACK', file });
    const other = await createRootCa({ commonName: 'rt_crl' });
    await writeFile(file, await createCrl({ issuer: other, entries: [], crlNumber: 1000 }));
    const foreign = await until(() => audit.events.find((e) => e.action === 'crl_refused' && e.data?.['code'] === 'E_CRL_INVALID'), 30_000, 'crl_refused E_CRL_INVALID');
    expect(foreign.msg).toContain(file);
    expect(crls.crlNumber).toBe(newest);
    expect(server.registry.names()).toEqual(['site-1']);
    expect(audit.events.filter((e) => e.action === 'session_revoked')).toEqual([]);
  });
});

describe('a CRL pushed to a connected site (in memory)', () => {
  it('an older CRL the server pushes is refused (crl_refused, E_CRL_ROLLBACK) and the site keeps its newer one', async () => {
    const crl3 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 3 });
    const crl1 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 1 });
    const crls = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem, seed: crl3 });
    const { server, hub } = await startServer(await tempDir());
    const site = await startSite(1, hub, { crls });
    await site.engine.registered(10_000);
    expect(server.applyCrl(loadCrl(crl1, { rootCaPem: TEST_ROOT.certPem }))).toEqual({ cut: [], pushed: 1 });
    const refused = await until(() => site.audit.events.find((e) => e.action === 'crl_refused'));
    expect(refused.data).toMatchObject({ code: 'E_CRL_ROLLBACK' });
    expect(crls.crlNumber).toBe(3n);
  });

  it('a pushed CRL signed by another root is refused (E_CRL_INVALID); a newer root-signed one is kept', async () => {
    const other = await createRootCa({ commonName: 'another' });
    const forged = await createCrl({ issuer: other, entries: [], crlNumber: 9 });
    const newer = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 5 });
    const crls = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem });
    const { server, hub } = await startServer(await tempDir());
    const site = await startSite(1, hub, { crls });
    await site.engine.registered(10_000);
    server.applyCrl(loadCrl(forged, { rootCaPem: other.certPem }));
    expect((await until(() => site.audit.events.find((e) => e.action === 'crl_refused'))).data).toMatchObject({ code: 'E_CRL_INVALID' });
    server.applyCrl(loadCrl(newer, { rootCaPem: TEST_ROOT.certPem }));
    await until(() => site.audit.events.find((e) => e.action === 'crl_updated'));
    expect(crls.crlNumber).toBe(5n);
  });

  it('a pushed CRL over 16 MiB is refused before it is decoded or parsed (E_CRL_INVALID naming the size); the site keeps its CRL', async () => {
    const crl3 = await createCrl({ issuer: TEST_ROOT, entries: [], crlNumber: 3 });
    const store = await CrlStore.open({ rootCaPem: TEST_ROOT.certPem, seed: crl3 });
    let offered = 0;
    const crls = { accept: (pem: string) => ((offered += 1), store.accept(pem)) };
    const { server, hub } = await startServer(await tempDir());
    const site = await startSite(1, hub, { crls });
    await site.engine.registered(10_000);
    // What a hostile server can send: any bytes in a `crl` message (applyCrl sends the CRL's PEM as the payload).
    const huge = { pem: 'A'.repeat(MAX_CRL_FILE_BYTES + 1), revoked: new Set<string>(), crlNumber: 99n } as unknown as Crl;
    server.applyCrl(huge);
    const refused = await until(() => site.audit.events.find((e) => e.action === 'crl_refused'));
    expect(refused.data).toMatchObject({ code: 'E_CRL_INVALID' });
    expect(refused.msg).toContain(`more than the ${MAX_CRL_FILE_BYTES}`);
    expect(offered).toBe(0);
    expect(store.crlNumber).toBe(3n);
  });
});
