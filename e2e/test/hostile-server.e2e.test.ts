// A hostile server (issue #14 item 8) against a real `flare client` site: the server is built from the project's
// own packages with the real server kit (TLS + @flare/auth session), speaks the runtime protocol, and tries to
// deploy a job under an invented submitter, a job nobody signed, and to abort a job without the admin's
// signature, to end a job as ABORTED without it, and to replay a signed job that ended. The site refuses each
// with its code, in its own audit log naming the site and the claimed submitter.
import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeModel, type JsonValue } from '@flare/core';
import { loadKit, parseProject, provision, type Kit } from '@flare/pki';
import { JOB_LEDGER_FILE, encodeJobBundle, listenForParticipants, parseMessage, signAbortRequest, signJobBundle, type JobBundle, type MessageOf, type PeerChannel } from '@flare/runtime';
import { denseNetwork, readWeights, selectBackend } from '@flare/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditOf, freePort, startFlare, stopAll, stopProcess, tempDir, until, type AuditLine, type Started } from './support.js';

const FEATURES = 16;
let root: string;
let siteWs: string;
let admin: Kit;
let lead: Kit;
let listener: Awaited<ReturnType<typeof listenForParticipants>> | undefined;
let channel: PeerChannel | undefined;
let siteKit: string;
let site: Started | undefined;
let registrations = 0;
const replies = new Map<string, (m: MessageOf<'deploy_reply'>) => void>();
const results = new Map<string, (m: MessageOf<'result'>) => void>();

const audit = (): Promise<AuditLine[]> => auditOf(siteWs);

function job(rounds = 1, more: Record<string, unknown> = {}): JobBundle {
  const definition = { name: 'hostile', rounds, min_clients: 1, round_timeout_s: 300, deploy: ['site-1'], ...more, learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 32 } } };
  return { meta: new TextEncoder().encode(JSON.stringify(definition)), model: encodeModel(readWeights(denseNetwork(FEATURES, [{ name: 'out', units: 1, activation: 'sigmoid' }]))), files: new Map() };
}

function deploy(id: string, bundle: JobBundle, submitter: { name: string; org: string; role?: string }): Promise<MessageOf<'deploy_reply'>> {
  const msgId = randomUUID();
  const answer = new Promise<MessageOf<'deploy_reply'>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no deploy reply within 120 s')), 120_000);
    replies.set(msgId, (m) => {
      clearTimeout(t);
      resolve(m);
    });
  });
  void channel!.send({ t: 'deploy', id: msgId, job: id, submitter }, encodeJobBundle(bundle));
  return answer;
}

/** Sends a task as the server; resolves with the site's result. */
function task(job: string, round: number, kind: string, payload: Uint8Array, data: JsonValue): Promise<MessageOf<'result'>> {
  const id = randomUUID();
  const answer = new Promise<MessageOf<'result'>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no result within 120 s')), 120_000);
    results.set(id, (m) => {
      clearTimeout(t);
      resolve(m);
    });
  });
  void channel!.send({ t: 'task', job, round, task: id, kind, data }, payload);
  return answer;
}

beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
  root = await tempDir('flare-hostile-server-e2e-');
  const port = await freePort();
  const yaml = `api_version: 3
name: hostile_server
participants:
  - name: localhost
    type: server
    org: org_a
    fed_learn_port: ${port}
  - name: site-1
    type: client
    org: org_a
  - name: admin@a.org
    type: admin
    org: org_a
    role: project_admin
  - name: lead@b.org
    type: admin
    org: org_b
    role: lead
`;
  const r = await provision(parseProject(yaml), { workspace: root });
  const dirs = new Map(r.kits.map((k) => [k.name, k.dir]));
  admin = await loadKit(dirs.get('admin@a.org')!);
  lead = await loadKit(dirs.get('lead@b.org')!);
  siteWs = join(root, 'site-1-ws');
  await mkdir(siteWs, { recursive: true });
  await writeFile(join(siteWs, 'site.json'), JSON.stringify({ data: { site: 0, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
  await writeFile(join(dirs.get('site-1')!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));

  // The hostile server: the real server kit and transport, and whatever messages it likes.
  listener = await listenForParticipants({ kit: await loadKit(dirs.get('localhost')!), port });
  const registered = new Promise<void>((resolve) => {
    listener!.onChannel((ch) => {
      channel = ch;
      ch.onMessage((h) => {
        const m = parseMessage(h);
        if (m.t === 'register') {
          void ch.send({ t: 'welcome' }).then(() => {
            registrations += 1;
            resolve();
          });
        }
        if (m.t === 'deploy_reply') replies.get(m.id)?.(m);
        if (m.t === 'result') results.get(m.task)?.(m);
      });
    });
  });
  siteKit = dirs.get('site-1')!;
  const started = await startFlare(['client', '--kit', siteKit, '--workspace', siteWs]);
  site = started;
  await Promise.race([registered, new Promise((_, reject) => setTimeout(() => reject(new Error(`site-1 did not register within 120 s: ${started.stderr()}`)), 120_000))]);
}, 180_000);

afterAll(async () => {
  await stopAll();
  await listener?.close();
});

describe('a hostile server against a real site (issue #14.8)', () => {
  it('a job signed by admin@a.org but claimed for lead@b.org is refused (E_POLICY_JOB_TAMPERED), audited with the site and the claimed submitter', async () => {
    const id = randomUUID();
    const reply = await deploy(id, signJobBundle(admin, job(), id), { name: 'lead@b.org', org: 'org_b', role: 'lead' });
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
    const line = await until(async () => (await audit()).find((l) => l.action === 'job_refused' && l.job === id), 120_000, 'the refusal in the site audit log');
    expect(line).toMatchObject({ user: 'lead@b.org', data: { code: 'E_POLICY_JOB_TAMPERED', site: 'site-1', claimed_submitter: 'lead@b.org (org_b)', signer: 'admin@a.org' } });
  });

  it('a job with an invented submitter and no signature is refused (E_POLICY_JOB_UNSIGNED); a lead\'s job passed off as the project admin\'s is refused (E_POLICY_JOB_TAMPERED)', async () => {
    const id = randomUUID();
    const reply = await deploy(id, job(), { name: 'ghost@nowhere.org', org: 'nowhere', role: 'project_admin' });
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_UNSIGNED' } });
    const line = await until(async () => (await audit()).find((l) => l.action === 'job_refused' && l.job === id), 120_000, 'the refusal');
    expect(line?.data).toMatchObject({ code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', claimed_submitter: 'ghost@nowhere.org (nowhere)' });
    const id2 = randomUUID();
    const byLead = await deploy(id2, signJobBundle(lead, job(), id2), { name: 'admin@a.org', org: 'org_a', role: 'project_admin' });
    expect(byLead).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_TAMPERED' } });
  });

  it('an abort without the admin\'s signature is never obeyed (E_POLICY_JOB_UNSIGNED); the signed abort is', async () => {
    const id = randomUUID();
    expect(await deploy(id, signJobBundle(admin, job(1000), id), { name: 'admin@a.org', org: 'org_a', role: 'project_admin' })).toMatchObject({ ok: true });
    await channel!.send({ t: 'abort', job: id, by: { name: 'admin@a.org', org: 'org_a' } });
    const refused = await until(async () => (await audit()).find((l) => l.action === 'abort_refused' && l.job === id), 120_000, 'the abort refusal');
    expect(refused.data).toMatchObject({ code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', claimed_by: 'admin@a.org (org_a)' });
    expect((await audit()).some((l) => l.action === 'job_released' && l.job === id)).toBe(false);
    await channel!.send({ t: 'abort', job: id, by: { name: 'admin@a.org', org: 'org_a' } }, signAbortRequest(admin, id));
    const released = await until(async () => (await audit()).find((l) => l.action === 'job_released' && l.job === id), 120_000, 'the job released after the signed abort');
    expect(released.data).toMatchObject({ code: 'E_RUNTIME_ABORTED' });
    expect((await audit()).find((l) => l.action === 'job_aborted' && l.job === id)?.user).toBe('admin@a.org');
  });

  it('the same signed job replayed after it ended is refused (E_POLICY_JOB_REPLAYED), audited in the site log; an unsigned ABORTED job_end is no admin abort', async () => {
    const claimed = { name: 'admin@a.org', org: 'org_a', role: 'project_admin' };
    const id = randomUUID();
    const signed = signJobBundle(admin, job(1000), id);
    expect(await deploy(id, signed, claimed)).toMatchObject({ ok: true });
    // The server ends the job as ABORTED with no admin's signed abort: refused as an abort, the job ends under that code.
    await channel!.send({ t: 'job_end', job: id, status: 'ABORTED' });
    const refused = await until(async () => (await audit()).find((l) => l.action === 'abort_refused' && l.job === id), 120_000, 'the job_end refusal');
    expect(refused.data).toMatchObject({ code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', via: 'job_end' });
    const released = await until(async () => (await audit()).find((l) => l.action === 'job_released' && l.job === id), 120_000, 'the job released');
    expect(released.data).toMatchObject({ code: 'E_POLICY_JOB_UNSIGNED' });
    expect((await audit()).some((l) => l.action === 'job_aborted' && l.job === id)).toBe(false);
    // The same signed bundle again: a replay.
    expect(await deploy(id, signed, claimed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
    const line = await until(async () => (await audit()).find((l) => l.action === 'job_replay_refused' && l.job === id), 120_000, 'the replay refusal');
    expect(line).toMatchObject({ user: 'admin@a.org', data: { code: 'E_POLICY_JOB_REPLAYED', site: 'site-1', prior: 'ended' } });
  });

  it("a cyclic hop the server says site-2 trained is refused without site-2's signature (E_RUNTIME_HOP_UNSIGNED) before the learner sees it, audited naming site-2; the signed initial model is trained and its result signed", async () => {
    const claimed = { name: 'admin@a.org', org: 'org_a', role: 'project_admin' };
    const id = randomUUID();
    const signed = signJobBundle(admin, job(2, { workflow: 'cyclic', deploy: ['site-1', 'site-2'] }), id);
    expect(await deploy(id, signed, claimed)).toMatchObject({ ok: true });
    const planted = encodeModel(readWeights(denseNetwork(FEATURES, [{ name: 'out', units: 1, activation: 'sigmoid' }])));
    expect(await task(id, 0, 'train', planted, { hop: 1, attempt: 0, from: 'site-2' })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    expect(await task(id, 1, 'train', planted, { hop: 0, attempt: 0 })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    const lines = await audit();
    expect(lines.find((l) => l.action === 'hop_refused' && l.job === id)).toMatchObject({ user: 'site-2', data: { code: 'E_RUNTIME_HOP_UNSIGNED', site: 'site-1', from: 'site-2', round: 0, hop: 1 } });
    expect(lines.some((l) => l.action === 'local_training_done' && l.job === id)).toBe(false);
    // Round 0's first hop with the model the admin signed: trained, and the result carries site-1's signature.
    const ok = await task(id, 0, 'train', signed.model!, { hop: 0, attempt: 0 });
    expect(ok).toMatchObject({ ok: true, data: { proof: { site: 'site-1', job: id, round: 0, attempt: 0, hop: 0 } } });
    expect((await audit()).find((l) => l.action === 'hop_signed' && l.job === id)).toBeDefined();
    await channel!.send({ t: 'job_end', job: id, status: 'FINISHED' });
    await until(async () => (await audit()).find((l) => l.action === 'job_released' && l.job === id), 120_000, 'the job released');
  });

  it("a job-ledger.json deleted while the site is down is restored from the site's audit log (E_RUNTIME_JOB_LEDGER_ROLLBACK): the replay is still refused", async () => {
    const claimed = { name: 'admin@a.org', org: 'org_a', role: 'project_admin' };
    const id = randomUUID();
    const signed = signJobBundle(admin, job(1000), id);
    expect(await deploy(id, signed, claimed)).toMatchObject({ ok: true });
    await channel!.send({ t: 'job_end', job: id, status: 'FINISHED' });
    await until(async () => (await audit()).find((l) => l.action === 'job_released' && l.job === id), 120_000, 'the job released');
    expect((await audit()).filter((l) => l.action === 'job_seen' && l.job === id).map((l) => l.data?.['state'])).toEqual(['running', 'ended']);

    // The local attacker: the site is stopped, its ledger deleted, the site started again.
    await stopProcess(site!);
    await rm(join(siteWs, JOB_LEDGER_FILE));
    const before = registrations;
    site = await startFlare(['client', '--kit', siteKit, '--workspace', siteWs]);
    await until(() => (registrations > before ? true : undefined), 120_000, 'site-1 registered again');
    const repaired = await until(async () => (await audit()).find((l) => l.action === 'job_ledger_repaired'), 120_000, 'the repair in the site audit log');
    expect(repaired.data).toMatchObject({ code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', file: JOB_LEDGER_FILE, jobs: expect.arrayContaining([id]) as unknown });
    expect(await deploy(id, signed, claimed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
  });
});
