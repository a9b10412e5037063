// A hostile server (a raw channel speaking the runtime protocol) against a real site: every job and every
// abort must be signed by the admin who issued it; the site takes the submitter from the certificate.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { isFlareError } from '@flare/core';
import { createRootCa, issueCertificate } from '@flare/pki';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin/client.js';
import { encodeJobBundle, type JobBundle } from '../src/protocol/bundle.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { signAbortRequest, signJobBundle } from '../src/protocol/job-trust.js';
import { outgoing, parseMessage, type MessageOf } from '../src/protocol/messages.js';
import { memoryHub } from '../src/testing/channels.js';
import { ADMIN, JOB_TRUST, PROJECT, adminKit, bundle, closeAll, federation, jobDefinition, learnerFactory, sitePolicy, startServer, startSite, tempDir, until } from './helpers.js';

afterEach(closeAll);

/** A server that says whatever it likes: it welcomes the site, then sends deploys and aborts of its choosing. */
async function hostileServer(opts: Parameters<typeof startSite>[2] = {}) {
  const hub = memoryHub({ name: 'server', org: 'nvidia', type: 'server' });
  const replies = new Map<string, (m: MessageOf<'deploy_reply'>) => void>();
  let channel: PeerChannel | undefined;
  hub.onChannel((ch) => {
    channel = ch;
    ch.onMessage((h) => {
      const m = parseMessage(h);
      if (m.t === 'register') void ch.send(outgoing({ t: 'welcome' }));
      if (m.t === 'deploy_reply') replies.get(m.id)?.(m);
    });
  });
  const site = await startSite(1, hub, { learner: learnerFactory(1, { delayMs: 200 }), ...opts });
  await site.engine.registered(10_000);
  const deploy = (job: string, b: JobBundle, submitter = { name: ADMIN.name, org: ADMIN.org, role: 'project_admin' }): Promise<MessageOf<'deploy_reply'>> => {
    const id = randomUUID();
    const answer = new Promise<MessageOf<'deploy_reply'>>((resolve) => replies.set(id, resolve));
    void channel!.send(outgoing({ t: 'deploy', id, job, submitter }), encodeJobBundle(b));
    return answer;
  };
  const abort = (job: string, signature?: Uint8Array, by = { name: ADMIN.name, org: ADMIN.org }): Promise<void> => channel!.send(outgoing({ t: 'abort', job, by }), signature);
  return { hub, site, deploy, abort };
}

const job1 = () => bundle(jobDefinition({ rounds: 1, deploy: ['site-1'], min_clients: 1 }));

describe('a hostile server cannot invent, change or abort jobs (issue #14.8)', () => {
  it('a site runs a job its admin signed; the submitter and role come from the certificate', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    const reply = await h.deploy(id, signJobBundle(await adminKit(ADMIN), job1(), id));
    expect(reply).toMatchObject({ ok: true });
    expect(h.site.engine.jobs()).toEqual([id]);
    const admitted = h.site.audit.events.find((e) => e.action === 'job_admitted');
    expect(admitted).toMatchObject({ user: ADMIN.name, data: { role: 'project_admin', site: 'site-1' } });
  });

  it('refuses an unsigned job (E_POLICY_JOB_UNSIGNED), audited with the site and the submitter the server claimed', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    const reply = await h.deploy(id, job1(), { name: 'ghost@nowhere.org', org: 'nowhere', role: 'project_admin' });
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_UNSIGNED' } });
    expect(h.site.engine.jobs()).toEqual([]);
    const refused = h.site.audit.events.find((e) => e.action === 'job_refused');
    expect(refused).toMatchObject({ job: id, data: { code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', claimed_submitter: 'ghost@nowhere.org (nowhere)' } });
  });

  it('refuses a job whose submitter the server invented: signed by one admin, claimed for another (E_POLICY_JOB_TAMPERED)', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    const reply = await h.deploy(id, signJobBundle(await adminKit(ADMIN), job1(), id), { name: 'lead@b.org', org: 'org_b', role: 'lead' });
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    expect(reply.error?.message).toContain('the server names "lead@b.org"');
    expect(h.site.engine.jobs()).toEqual([]);
    expect(h.site.audit.events.find((e) => e.action === 'job_refused' && e.data?.['code'] === 'E_POLICY_JOB_TAMPERED')).toMatchObject({ user: 'lead@b.org', data: { site: 'site-1', claimed_submitter: 'lead@b.org (org_b)' } });
  });

  it('refuses a job the server changed (meta.json, the model), re-labelled, or signed for another project (E_POLICY_JOB_TAMPERED, E_POLICY_JOB_BINDING)', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    const signed = signJobBundle(kit, job1(), id);
    const meta = new TextEncoder().encode(JSON.stringify(jobDefinition({ rounds: 100, deploy: ['site-1'], min_clients: 1 })));
    const changed = await h.deploy(id, { ...signed, meta });
    expect(changed).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    expect(changed.error?.message).toContain('"meta.json" differs');
    const model = Uint8Array.from(signed.model!);
    model[model.length - 1] = model[model.length - 1]! ^ 1;
    expect(await h.deploy(id, { ...signed, model })).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    // The same signed job under another id: the signature names the job id the admin chose.
    expect(await h.deploy(randomUUID(), signed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_BINDING' } });
    const other = await adminKit(ADMIN, 'another_project');
    expect(await h.deploy(id, signJobBundle(other, job1(), id))).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_BINDING' } });
    expect(h.site.engine.jobs()).toEqual([]);
  });

  it('refuses a job signed by an admin of another root, and one signed with a site-like certificate (E_POLICY_JOB_SIGNER)', async () => {
    const h = await hostileServer();
    const rogueRoot = await createRootCa({ commonName: PROJECT });
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rogue = { project: PROJECT, certPem: await issueCertificate({ issuer: rogueRoot, subject: { name: ADMIN.name, org: ADMIN.org, type: 'admin', role: 'project_admin' }, publicKey: pair.publicKey }), privateKey: pair.privateKey };
    const id = randomUUID();
    const reply = await h.deploy(id, signJobBundle(rogue, job1(), id));
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_SIGNER' } });
    expect(reply.error?.message).toContain('E_CERT_UNTRUSTED');
  });

  it('never obeys an abort without a valid signature (E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_BINDING); a signed one is obeyed', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(kit, bundle(jobDefinition({ rounds: 50, deploy: ['site-1'], min_clients: 1 })), id))).toMatchObject({ ok: true });
    await h.abort(id, undefined, { name: 'lead@b.org', org: 'org_b' });
    const unsigned = await until(() => h.site.audit.events.find((e) => e.action === 'abort_refused'));
    expect(unsigned).toMatchObject({ job: id, data: { code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', claimed_by: 'lead@b.org (org_b)' } });
    await h.abort(id, signAbortRequest(kit, randomUUID()));
    await until(() => (h.site.audit.events.filter((e) => e.action === 'abort_refused').length === 2 ? true : undefined));
    expect(h.site.audit.events.filter((e) => e.action === 'abort_refused')[1]?.data).toMatchObject({ code: 'E_POLICY_JOB_BINDING' });
    expect(h.site.engine.jobs()).toEqual([id]);
    await h.abort(id, signAbortRequest(kit, id));
    await until(() => (h.site.engine.jobs().length === 0 ? true : undefined));
    expect(h.site.audit.events.find((e) => e.action === 'job_aborted')).toMatchObject({ user: ADMIN.name });
  });

  it('a site without project trust refuses every job (E_POLICY_JOB_SIGNER)', async () => {
    const untrusting = sitePolicy();
    delete (untrusting as { jobTrust?: unknown }).jobTrust;
    const h = await hostileServer({ policy: untrusting });
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), job1(), id))).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_SIGNER' } });
  });
});

describe('a server with job trust refuses what its admin did not sign, at submit', () => {
  it('refuses an unsigned job (E_POLICY_JOB_UNSIGNED), one signed by another admin (E_POLICY_JOB_SIGNER) and an unsigned abort', async () => {
    const fed = await federation([{}], { server: { jobTrust: JOB_TRUST } });
    const unsigned = new AdminClient(await fed.hub.connect(ADMIN), { timeoutMs: 10_000 });
    expect(isFlareError(await unsigned.submit(job1()).catch((e: unknown) => e), 'E_POLICY_JOB_UNSIGNED')).toBe(true);
    const id = randomUUID();
    const byOther = signJobBundle(await adminKit({ name: 'lead@b.org', org: 'org_b', role: 'lead' }), job1(), id);
    const err = await fed.admin.submit(byOther, { id }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_POLICY_JOB_SIGNER')).toBe(true);
    expect(fed.serverAudit.events.find((e) => e.action === 'job_refused')).toMatchObject({ user: ADMIN.name, data: { code: 'E_POLICY_JOB_SIGNER', signer: 'lead@b.org' } });
    const ok = await fed.admin.submit(bundle(jobDefinition({ rounds: 1000, deploy: ['site-1'], min_clients: 1 })));
    await until(async () => ((await fed.admin.status(ok)).status === 'RUNNING' ? true : undefined));
    expect(isFlareError(await unsigned.abort(ok).catch((e: unknown) => e), 'E_POLICY_JOB_UNSIGNED')).toBe(true);
    await fed.admin.abort(ok);
    expect((await fed.server.waitForJob(ok, 10_000)).status).toBe('ABORTED');
    unsigned.close();
  });

  it('a server without job trust stores what it is sent, and the sites still refuse an unsigned job', async () => {
    const { server, hub } = await startServer(await tempDir());
    for (const n of [1, 2]) await (await startSite(n, hub, { policy: sitePolicy() })).engine.registered(10_000);
    const unsigned = new AdminClient(await hub.connect(ADMIN), { timeoutMs: 10_000 });
    const id = await unsigned.submit(bundle(jobDefinition({ rounds: 1, deploy: ['site-1', 'site-2'] })));
    const rec = await server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_JOB_UNSIGNED/);
    unsigned.close();
  });
});
