// A hostile server (a raw channel speaking the runtime protocol) against a real site, for what signatures alone
// do not stop (issue #14): replaying a signed job the site already ran or refused, deploying a job signed long
// ago, swapping the signed initial model in round 0, and ending a job as ABORTED without an admin's signed abort.
import { randomUUID } from 'node:crypto';
import { copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { META, encodeModel, model, tensor, decodeModel, type JsonValue } from '@flare/core';
import { createCrl, createRootCa } from '@flare/pki';
import { verifyJob } from '@flare/policy';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeJobBundle, signedJobFiles, type JobBundle } from '../src/protocol/bundle.js';
import type { PeerChannel } from '../src/protocol/channel.js';
import { receivedSignature, signAbortRequest, signJobBundle } from '../src/protocol/job-trust.js';
import { outgoing, parseMessage, type MessageOf } from '../src/protocol/messages.js';
import { JOB_LEDGER_FILE, jobLedgerFromAudit } from '../src/site/job-ledger.js';
import { memoryHub } from '../src/testing/channels.js';
import { nextHopModel, signHop, verifyHop, type CyclicSiteIdentity, type HopPosition } from '../src/workflows/cyclic-hop.js';
import { signedCyclicSite } from '../src/workflows/cyclic-site.js';
import { ADMIN, JOB_TRUST, PROJECT, TEST_ROOT, adminKit, bundle, closeAll, initialModelBytes, jobDefinition, learnerFactory, siteIdentity, startSite, tempDir, until, type SiteOptions } from './helpers.js';

afterEach(closeAll);

const DAY = 24 * 3600_000;

/** A server that says whatever it likes: it welcomes the site, then sends deploys, tasks, aborts and job ends of its choosing. */
async function hostileServer(opts: SiteOptions = {}) {
  const hub = memoryHub({ name: 'server', org: 'nvidia', type: 'server' });
  const replies = new Map<string, (m: MessageOf<'deploy_reply'>) => void>();
  const results = new Map<string, (m: MessageOf<'result'>) => void>();
  /** The bytes each result carried, by task id. */
  const bodies = new Map<string, Uint8Array>();
  let channel: PeerChannel | undefined;
  let channels = 0;
  hub.onChannel((ch) => {
    channel = ch;
    channels += 1;
    ch.onMessage((h, payload) => {
      const m = parseMessage(h);
      if (m.t === 'result') bodies.set(m.task, payload);
      if (m.t === 'register') void ch.send(outgoing({ t: 'welcome' }));
      if (m.t === 'deploy_reply') replies.get(m.id)?.(m);
      if (m.t === 'result') results.get(m.task)?.(m);
    });
  });
  const workspace = opts.workspace ?? (await tempDir());
  const start = async (more: SiteOptions = {}) => {
    const s = await startSite(1, hub, { learner: learnerFactory(1), workspace, ...opts, ...more });
    await s.engine.registered(10_000);
    return s;
  };
  const site = await start();
  const deploy = (job: string, b: JobBundle, submitter = { name: ADMIN.name, org: ADMIN.org, role: 'project_admin' }): Promise<MessageOf<'deploy_reply'>> => {
    const id = randomUUID();
    const answer = new Promise<MessageOf<'deploy_reply'>>((resolve) => replies.set(id, resolve));
    void channel!.send(outgoing({ t: 'deploy', id, job, submitter }), encodeJobBundle(b));
    return answer;
  };
  const task = (job: string, round: number, payload: Uint8Array, data?: JsonValue, kind = 'train'): Promise<MessageOf<'result'>> => {
    const id = randomUUID();
    const answer = new Promise<MessageOf<'result'>>((resolve) => results.set(id, resolve));
    void channel!.send(outgoing({ t: 'task', job, round, task: id, kind, ...(data === undefined ? {} : { data }) }), payload);
    return answer;
  };
  const jobEnd = (job: string, status: MessageOf<'job_end'>['status'], payload?: Uint8Array): Promise<void> => channel!.send(outgoing({ t: 'job_end', job, status }), payload);
  /** Cuts the connection; resolves when the site is back. */
  const reconnect = async (): Promise<void> => {
    const before = channels;
    channel!.close();
    await until(() => (channels > before ? true : undefined), 10_000, 'the site reconnecting');
    await site.engine.registered(10_000);
  };
  /** The bytes a result carried (the site's update). */
  const body = (r: MessageOf<'result'>): Uint8Array => bodies.get(r.task)!;
  return { hub, site, workspace, start, deploy, task, body, jobEnd, reconnect };
}

const job1 = () => bundle(jobDefinition({ rounds: 1, deploy: ['site-1'], min_clients: 1 }));
const released = (s: { audit: { events: Array<{ action: string; job?: string }> } }, id: string) => until(() => s.audit.events.find((e) => e.action === 'job_released' && e.job === id), 10_000, 'the job released');

describe('a signed job runs once at a site: replays are refused (issue #14)', () => {
  it('refuses a signed job replayed after it ended (E_POLICY_JOB_REPLAYED), audited with the site and the claimed submitter, also after a restart', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), job1(), id);
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    await h.jobEnd(id, 'FINISHED');
    await released(h.site, id);

    const replay = await h.deploy(id, signed);
    expect(replay).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
    expect(h.site.engine.jobs()).toEqual([]);
    expect(h.site.audit.events.find((e) => e.action === 'job_replay_refused')).toMatchObject({ job: id, user: ADMIN.name, data: { code: 'E_POLICY_JOB_REPLAYED', site: 'site-1', prior: 'ended', claimed_submitter: `${ADMIN.name} (${ADMIN.org})` } });
    expect(h.site.audit.events.find((e) => e.action === 'deploy_refused' && e.data?.['code'] === 'E_POLICY_JOB_REPLAYED')).toBeDefined();

    // The memory is durable: the same site restarted on its workspace still refuses it.
    await h.site.engine.close();
    const again = await h.start();
    expect(await h.deploy(id, signed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
    expect(again.audit.events.some((e) => e.action === 'job_replay_refused' && e.job === id)).toBe(true);
    const ledger = JSON.parse(await readFile(join(h.workspace, JOB_LEDGER_FILE), 'utf8')) as { jobs: Record<string, { state: string }> };
    expect(ledger.jobs[id]).toMatchObject({ state: 'ended', code: 'FINISHED' });
  });

  it('a job interrupted by a lost connection may be deployed again (that is how a job resumes); once aborted it may not', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    const signed = signJobBundle(kit, job1(), id);
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    await h.reconnect();
    await released(h.site, id);
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    expect(h.site.engine.jobs()).toEqual([id]);
    await h.jobEnd(id, 'ABORTED', signAbortRequest(kit, id));
    await until(() => h.site.audit.events.find((e) => e.action === 'job_aborted' && e.job === id), 10_000, 'the job aborted');
    expect(await h.deploy(id, signed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
  });

  it('a signed job the site refused stays refused (E_POLICY_JOB_REPLAYED); a forged job does not block the real one with its id', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    // Refused by this site's own policy: a learner it does not allow.
    const refused = signJobBundle(kit, bundle(jobDefinition({ rounds: 1, deploy: ['site-1'], min_clients: 1, learner: { name: 'not-allowed', args: {} } })), id);
    expect(await h.deploy(id, refused)).toMatchObject({ ok: false, error: { code: 'E_POLICY_COMPONENT' } });
    expect(await h.deploy(id, refused)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });

    // An unsigned job under an id the admin will sign later: refused, and not remembered.
    const later = randomUUID();
    expect(await h.deploy(later, job1())).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_UNSIGNED' } });
    expect(await h.deploy(later, signJobBundle(kit, job1(), later))).toMatchObject({ ok: true });
  });

  it('refuses a job signed longer ago than the site accepts, or in the future (E_POLICY_JOB_EXPIRED), audited', async () => {
    const h = await hostileServer({ maxJobAgeMs: 2 * DAY });
    const kit = await adminKit(ADMIN);
    const old = randomUUID();
    const reply = await h.deploy(old, signJobBundle(kit, job1(), old, new Date(Date.now() - 3 * DAY)));
    expect(reply).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_EXPIRED' } });
    expect(h.site.audit.events.find((e) => e.action === 'job_refused' && e.data?.['code'] === 'E_POLICY_JOB_EXPIRED')).toMatchObject({ job: old, user: ADMIN.name, data: { site: 'site-1' } });
    const future = randomUUID();
    expect(await h.deploy(future, signJobBundle(kit, job1(), future, new Date(Date.now() + DAY)))).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_EXPIRED' } });
    const fresh = randomUUID();
    expect(await h.deploy(fresh, signJobBundle(kit, job1(), fresh, new Date(Date.now() - DAY)))).toMatchObject({ ok: true });
  });

  it('the age window applies to a job met for the first time only: a running job older than it resumes after a reconnect', async () => {
    const workspace = await tempDir();
    const h = await hostileServer({ workspace, maxJobAgeMs: 2 * DAY });
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), job1(), id, new Date(Date.now() - DAY));
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    await h.site.engine.close();
    // The same site, restarted with a shorter window: the job it was running is older than that now.
    const restarted = await hostileServer({ workspace, maxJobAgeMs: DAY / 2 });
    expect(await restarted.deploy(id, signed)).toMatchObject({ ok: true });
    // A job of the same age it never met is refused.
    const other = randomUUID();
    expect(await restarted.deploy(other, signJobBundle(await adminKit(ADMIN), job1(), other, new Date(Date.now() - DAY)))).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_EXPIRED' } });
  });
});

describe("the job ledger is anchored in the site's audit log (issue #14)", () => {
  const ledgerOf = async (workspace: string) => (JSON.parse(await readFile(join(workspace, JOB_LEDGER_FILE), 'utf8')) as { jobs: Record<string, { state: string }> }).jobs;

  it('a deleted job-ledger.json is restored from the audit log: the replay is still refused (E_POLICY_JOB_REPLAYED), the repair audited with E_RUNTIME_JOB_LEDGER_ROLLBACK naming the job', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), job1(), id);
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    await h.jobEnd(id, 'FINISHED');
    await released(h.site, id);
    // Every ledger change went to the audit log first.
    expect(h.site.audit.events.filter((e) => e.action === 'job_seen' && e.job === id).map((e) => e.data?.['state'])).toEqual(['running', 'ended']);

    await h.site.engine.close();
    await rm(join(h.workspace, JOB_LEDGER_FILE));
    const again = await h.start({ auditedJobs: await jobLedgerFromAudit(h.site.audit.events) });
    expect(again.audit.events.find((e) => e.action === 'job_ledger_repaired')).toMatchObject({ data: { code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', file: JOB_LEDGER_FILE, repaired: 1, jobs: [id] } });
    expect((await ledgerOf(h.workspace))[id]).toMatchObject({ state: 'ended', code: 'FINISHED' });
    expect(await h.deploy(id, signed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
    expect(again.audit.events.some((e) => e.action === 'job_replay_refused' && e.job === id)).toBe(true);
  });

  it('an older copy put back (the job still running in it) is rolled forward to what the log says; an untouched ledger is not repaired', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const id = randomUUID();
    const signed = signJobBundle(kit, job1(), id);
    expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
    const old = join(await tempDir(), 'old-ledger.json');
    await copyFile(join(h.workspace, JOB_LEDGER_FILE), old);
    await h.jobEnd(id, 'ABORTED', signAbortRequest(kit, id));
    await released(h.site, id);
    await h.site.engine.close();

    // Untouched: the same entries, nothing to repair.
    const same = await h.start({ auditedJobs: await jobLedgerFromAudit(h.site.audit.events) });
    expect(same.audit.events.some((e) => e.action === 'job_ledger_repaired')).toBe(false);
    await same.engine.close();

    await copyFile(old, join(h.workspace, JOB_LEDGER_FILE));
    expect((await ledgerOf(h.workspace))[id]).toMatchObject({ state: 'running' });
    const again = await h.start({ auditedJobs: await jobLedgerFromAudit([...h.site.audit.events, ...same.audit.events]) });
    expect(again.audit.events.find((e) => e.action === 'job_ledger_repaired')).toMatchObject({ data: { code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', repaired: 1, jobs: [id] } });
    expect((await ledgerOf(h.workspace))[id]).toMatchObject({ state: 'ended', code: 'E_RUNTIME_ABORTED' });
    expect(await h.deploy(id, signed)).toMatchObject({ ok: false, error: { code: 'E_POLICY_JOB_REPLAYED' } });
  });
});

describe('round 0 brings the initial model the admin signed (issue #14)', () => {
  it('refuses a round-0 global model that is not the signed initial model (E_RUNTIME_INITIAL_MODEL), audited naming the server; the signed one passes', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), job1(), id))).toMatchObject({ ok: true });

    const swapped = encodeModel(model({ w: tensor(new Float32Array([5, -5]), [2]) }));
    const refused = await h.task(id, 0, swapped);
    expect(refused).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_INITIAL_MODEL' } });
    expect(h.site.audit.events.find((e) => e.action === 'initial_model_refused')).toMatchObject({ job: id, user: 'server', data: { code: 'E_RUNTIME_INITIAL_MODEL', site: 'site-1', server: 'server', round: 0 } });
    expect(h.site.audit.events.some((e) => e.action === 'local_training_done')).toBe(false);

    // An extra tensor, or another dtype, is a different model too.
    const extra = encodeModel(model({ w: tensor(new Float32Array([0, 0]), [2]), b: tensor(new Float32Array([0]), [1]) }));
    expect(await h.task(id, 0, extra)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_INITIAL_MODEL' } });

    // The same tensors with the round noted in the metadata (another encoding) are the signed model.
    const same = encodeModel(model({ w: tensor(new Float32Array([0, 0]), [2]) }, 'full', { [META.CURRENT_ROUND]: 0 }));
    expect(same).not.toEqual(initialModelBytes());
    expect(await h.task(id, 0, same)).toMatchObject({ ok: true });
    // Later rounds carry the aggregate, which no admin signed.
    expect(await h.task(id, 1, swapped)).toMatchObject({ ok: true });
  });
});

describe('round 0 of a cyclic job starts from the initial model the admin signed (issue #14)', () => {
  const cyclicJob = () => bundle(jobDefinition({ workflow: 'cyclic', rounds: 2, deploy: ['site-1', 'site-2'], min_clients: 1 }));
  const swapped = () => encodeModel(model({ w: tensor(new Float32Array([5, -5]), [2]) }));

  it('refuses a planted model at the first hop (E_RUNTIME_INITIAL_MODEL), audited naming the server, whatever hop the server claims without naming a trainer', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), cyclicJob(), id))).toMatchObject({ ok: true });
    // No hop data (a server that says nothing), the first hop, a later hop or a retry with no trainer named.
    for (const data of [undefined, { hop: 0, attempt: 0 }, { hop: 3, attempt: 0 }, { hop: 0, attempt: 2 }]) {
      expect(await h.task(id, 0, swapped(), data)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_INITIAL_MODEL' } });
    }
    expect(h.site.audit.events.filter((e) => e.action === 'initial_model_refused')).toHaveLength(4);
    expect(h.site.audit.events.find((e) => e.action === 'initial_model_refused')).toMatchObject({ job: id, user: 'server', data: { code: 'E_RUNTIME_INITIAL_MODEL', site: 'site-1', server: 'server', round: 0, kind: 'train' } });
    expect(h.site.audit.events.some((e) => e.action === 'local_training_done')).toBe(false);
    // The signed model passes.
    expect(await h.task(id, 0, initialModelBytes(), { hop: 0, attempt: 0 })).toMatchObject({ ok: true });
  });

  it('a claim naming a site outside the job, or malformed, is no claim: the planted model is refused (E_RUNTIME_INITIAL_MODEL)', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), cyclicJob(), id))).toMatchObject({ ok: true });
    for (const data of [{ hop: 1, attempt: 0, from: 'site-9' }, { hop: 1, attempt: 0, from: 'site-2', extra: true }, { hop: -1, from: 'site-2' }, 'site-2']) {
      expect(await h.task(id, 0, swapped(), data)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_INITIAL_MODEL' } });
    }
  });

  it('at a site without its kit identity (cyclicSite), a hop after a site of the job trained takes that site\'s model on the server\'s word, audited naming the site', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), cyclicJob(), id))).toMatchObject({ ok: true });
    expect(await h.task(id, 0, swapped(), { hop: 1, attempt: 0, from: 'site-2' })).toMatchObject({ ok: true });
    expect(h.site.audit.events.find((e) => e.action === 'hop_received')).toMatchObject({ job: id, user: 'site-2', data: { round: 0, hop: 1, attempt: 0, from: 'site-2' } });
    expect(await h.task(id, 1, swapped(), { hop: 0, attempt: 0 })).toMatchObject({ ok: true });
  });
});

describe('a cyclic hop is signed by the site that trained it (issue #14)', () => {
  const cyclicJob = () => bundle(jobDefinition({ workflow: 'cyclic', rounds: 3, deploy: ['site-1', 'site-2'], min_clients: 1 }));
  const w = (a: number, b: number): Uint8Array => encodeModel(model({ w: tensor(new Float32Array([a, b]), [2]) }));
  const planted = (): Uint8Array => w(5, -5);

  /** site-1 with its kit identity (signedCyclicSite) behind a hostile server, and the jobs it deployed. */
  async function signedSite(o: { crl?: () => string | undefined } = {}) {
    const me = await siteIdentity('site-1', o);
    const h = await hostileServer({ workflows: [signedCyclicSite(me)] });
    const deployJob = async () => {
      const id = randomUUID();
      const signed = signJobBundle(await adminKit(ADMIN), cyclicJob(), id);
      expect(await h.deploy(id, signed)).toMatchObject({ ok: true });
      const manifest = verifyJob(receivedSignature(signed.signature), signedJobFiles(signed), { projectName: PROJECT, jobId: id, verifyCertificate: JOB_TRUST.verifyCertificate }).manifestSha256;
      /** A proof by `who` (named `name`) over `bytes` at `at` of this job, as that site's signedCyclicSite makes it. */
      const proof = (who: CyclicSiteIdentity, name: string, bytes: Uint8Array, at: Partial<HopPosition> & { round: number; hop: number }) =>
        signHop(who, manifest, { site: name, job: id, attempt: 0, ...at }, decodeModel(bytes));
      return { id, manifest, proof };
    };
    const refusals = () => h.site.audit.events.filter((e) => e.action === 'hop_refused');
    const trained = () => h.site.audit.events.filter((e) => e.action === 'local_training_done').length;
    return { me, h, deployJob, refusals, trained, site2: await siteIdentity('site-2') };
  }

  it('refuses a model the server says site-2 trained without site-2\'s signature, or with a malformed one (E_RUNTIME_HOP_UNSIGNED), audited naming site-2; after round 0 a model naming no trainer too', async () => {
    const s = await signedSite();
    const { id } = await s.deployJob();
    expect(await s.h.task(id, 0, planted(), { hop: 1, attempt: 0, from: 'site-2' })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    expect(s.refusals()[0]).toMatchObject({ job: id, user: 'site-2', data: { code: 'E_RUNTIME_HOP_UNSIGNED', site: 'site-1', from: 'site-2', round: 0, hop: 1, attempt: 0, kind: 'train' } });
    expect(await s.h.task(id, 0, planted(), { hop: 1, attempt: 0, from: 'site-2', proof: { site: 'site-2', signature: 'AAAA' } })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    // Round 1 brings what a site trained in round 0: a model naming no trainer is not the initial model then.
    expect(await s.h.task(id, 1, initialModelBytes(), { hop: 0, attempt: 0 })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    expect(s.refusals()).toHaveLength(3);
    expect(s.trained()).toBe(0);
    // Round 0's first hop is the signed initial model: taken, trained and signed.
    expect(await s.h.task(id, 0, initialModelBytes(), { hop: 0, attempt: 0 })).toMatchObject({ ok: true, data: { proof: { site: 'site-1', job: id, round: 0, attempt: 0, hop: 0 } } });
  });

  it('refuses site-2\'s signed hop with one weight altered, or with a planted model (E_RUNTIME_HOP_MODEL); takes the signed one, and signs what the next site receives', async () => {
    const s = await signedSite();
    const job = await s.deployJob();
    const model2 = w(0.5, 0.5);
    const proof = job.proof(s.site2, 'site-2', model2, { round: 0, hop: 1 });
    const hop = { hop: 0, attempt: 0, from: 'site-2', proof };
    expect(await s.h.task(job.id, 1, w(0.5, 0.25), hop)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_MODEL' } });
    expect(await s.h.task(job.id, 1, planted(), hop)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_MODEL' } });
    expect(s.refusals().map((e) => e.data?.['code'])).toEqual(['E_RUNTIME_HOP_MODEL', 'E_RUNTIME_HOP_MODEL']);
    expect(s.refusals()[0]).toMatchObject({ user: 'site-2', data: { from: 'site-2', round: 1 } });
    expect(s.trained()).toBe(0);

    // The same tensors with the round in the metadata (the server notes it) are what site-2 signed.
    const same = encodeModel(model({ w: tensor(new Float32Array([0.5, 0.5]), [2]) }, 'full', { [META.CURRENT_ROUND]: 1 }));
    const ok = await s.h.task(job.id, 1, same, hop);
    expect(ok).toMatchObject({ ok: true });
    expect(s.h.site.audit.events.find((e) => e.action === 'hop_verified')).toMatchObject({ job: job.id, user: 'site-2', data: { from: 'site-2', signed: { round: 0, attempt: 0, hop: 1 } } });
    // site-1's own proof binds the model as the server forms it (the model it got plus its diff): site-2 takes it.
    const next = nextHopModel(same, s.h.body(ok));
    const p = verifyHop(s.site2, (ok.data as { proof: unknown }).proof, { job: job.id, manifest: job.manifest, deploy: ['site-1', 'site-2'], claimed: 'site-1', current: { round: 1, attempt: 0, hop: 1 } }, next);
    expect(p).toMatchObject({ site: 'site-1', round: 1, attempt: 0, hop: 0 });
    // ... and nothing else: one weight off is refused there too.
    next.params.get('w')!.data[0] = 0.123;
    expect(() => verifyHop(s.site2, p, { job: job.id, manifest: job.manifest, deploy: ['site-1', 'site-2'], claimed: 'site-1', current: { round: 1, attempt: 0, hop: 1 } }, next)).toThrow(expect.objectContaining({ code: 'E_RUNTIME_HOP_MODEL' }));
  });

  it('refuses site-2\'s signed hop replayed from another job (E_RUNTIME_HOP_BINDING, or E_RUNTIME_HOP_SIGNATURE when its job is rewritten), from an earlier hop than it holds, or from a place not before the task (E_RUNTIME_HOP_BINDING)', async () => {
    const s = await signedSite();
    const a = await s.deployJob();
    const b = await s.deployJob();
    const model2 = w(0.5, 0.5);
    const fromB = b.proof(s.site2, 'site-2', model2, { round: 0, hop: 1 });
    expect(await s.h.task(a.id, 1, model2, { hop: 0, attempt: 0, from: 'site-2', proof: fromB })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_BINDING' } });
    expect(await s.h.task(a.id, 1, model2, { hop: 0, attempt: 0, from: 'site-2', proof: { ...fromB, job: a.id } })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_SIGNATURE' } });
    // A proof of a later place than the task it comes with.
    const later = a.proof(s.site2, 'site-2', model2, { round: 1, hop: 1 });
    expect(await s.h.task(a.id, 1, model2, { hop: 0, attempt: 0, from: 'site-2', proof: later })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_BINDING' } });

    // Round 1: site-1 takes site-2's round-0 model and trains on it (it now holds round 1 hop 0).
    const round0 = a.proof(s.site2, 'site-2', model2, { round: 0, hop: 1 });
    expect(await s.h.task(a.id, 1, model2, { hop: 0, attempt: 0, from: 'site-2', proof: round0 })).toMatchObject({ ok: true });
    // Round 2: the server replays that older hop instead of site-2's round-1 model.
    expect(await s.h.task(a.id, 2, model2, { hop: 0, attempt: 0, from: 'site-2', proof: round0 })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_BINDING' } });
    // ... or round 0's initial model again (naming no trainer).
    expect(await s.h.task(a.id, 0, initialModelBytes(), { hop: 0, attempt: 1 })).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_UNSIGNED' } });
    expect(s.refusals().map((e) => e.data?.['code'])).toEqual(['E_RUNTIME_HOP_BINDING', 'E_RUNTIME_HOP_SIGNATURE', 'E_RUNTIME_HOP_BINDING', 'E_RUNTIME_HOP_BINDING', 'E_RUNTIME_HOP_UNSIGNED']);
    // site-2's round-1 model is taken.
    const model3 = w(0.75, 0.75);
    expect(await s.h.task(a.id, 2, model3, { hop: 0, attempt: 0, from: 'site-2', proof: a.proof(s.site2, 'site-2', model3, { round: 1, hop: 1 }) })).toMatchObject({ ok: true });
    expect(s.trained()).toBe(2);
  });

  it('refuses a hop signed by a site outside the job or under another name (E_RUNTIME_HOP_BINDING), by a certificate of another root or a revoked one (E_RUNTIME_HOP_SIGNATURE)', async () => {
    let crl: string | undefined;
    const s = await signedSite({ crl: () => crl });
    const job = await s.deployJob();
    const model2 = w(0.5, 0.5);
    const at = { round: 0, hop: 1 };
    const site9 = await siteIdentity('site-9');
    const hop = (from: string, proof: unknown) => ({ hop: 0, attempt: 0, from, proof }) as JsonValue;
    expect(await s.h.task(job.id, 1, model2, hop('site-9', job.proof(site9, 'site-9', model2, at)))).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_BINDING' } });
    expect(await s.h.task(job.id, 1, model2, hop('site-2', job.proof(site9, 'site-9', model2, at)))).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_BINDING' } });
    // site-9's key and certificate, claiming to be site-2's proof: the certificate does not name site-2.
    expect(await s.h.task(job.id, 1, model2, hop('site-2', job.proof(site9, 'site-2', model2, at)))).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_SIGNATURE' } });
    // A site-2 certificate from a root this project does not trust.
    const foreign = await siteIdentity('site-2', { issuer: await createRootCa({ commonName: PROJECT }) });
    expect(await s.h.task(job.id, 1, model2, hop('site-2', job.proof(foreign, 'site-2', model2, at)))).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_SIGNATURE' } });
    expect(s.refusals().every((e) => e.user === e.data?.['from'])).toBe(true);
    expect(s.trained()).toBe(0);

    // site-2 revoked by the newest CRL site-1 holds: its hop, valid a moment ago, is refused.
    const valid = hop('site-2', job.proof(s.site2, 'site-2', model2, at));
    crl = await createCrl({ issuer: TEST_ROOT, entries: [{ serial: s.site2.serial, date: new Date() }], crlNumber: 7 });
    expect(await s.h.task(job.id, 1, model2, valid)).toMatchObject({ ok: false, error: { code: 'E_RUNTIME_HOP_SIGNATURE' } });
    crl = undefined;
    expect(await s.h.task(job.id, 1, model2, valid)).toMatchObject({ ok: true });
  });
});

describe('job_end ABORTED is an admin abort only when signed (issue #14)', () => {
  it('an unsigned ABORTED job_end is refused as an abort (E_POLICY_JOB_UNSIGNED), audited naming the server; the job ends under that code', async () => {
    const h = await hostileServer();
    const id = randomUUID();
    expect(await h.deploy(id, signJobBundle(await adminKit(ADMIN), job1(), id))).toMatchObject({ ok: true });
    await h.jobEnd(id, 'ABORTED');
    const refused = await until(() => h.site.audit.events.find((e) => e.action === 'abort_refused'), 10_000, 'abort refused');
    expect(refused).toMatchObject({ job: id, data: { code: 'E_POLICY_JOB_UNSIGNED', site: 'site-1', via: 'job_end', server: 'server' } });
    const end = await released(h.site, id);
    expect(end).toMatchObject({ data: { code: 'E_POLICY_JOB_UNSIGNED' } });
    expect(h.site.audit.events.some((e) => e.action === 'job_aborted')).toBe(false);
  });

  it('an ABORTED job_end signed for another job is refused (E_POLICY_JOB_BINDING); one carrying the admin\'s signed abort is recorded as the admin\'s abort', async () => {
    const h = await hostileServer();
    const kit = await adminKit(ADMIN);
    const a = randomUUID();
    const b = randomUUID();
    expect(await h.deploy(a, signJobBundle(kit, job1(), a))).toMatchObject({ ok: true });
    expect(await h.deploy(b, signJobBundle(kit, job1(), b))).toMatchObject({ ok: true });
    await h.jobEnd(a, 'ABORTED', signAbortRequest(kit, b));
    expect(await until(() => h.site.audit.events.find((e) => e.action === 'abort_refused' && e.job === a), 10_000, 'abort refused')).toMatchObject({ data: { code: 'E_POLICY_JOB_BINDING', via: 'job_end' } });
    await h.jobEnd(b, 'ABORTED', signAbortRequest(kit, b));
    expect(await until(() => h.site.audit.events.find((e) => e.action === 'job_aborted' && e.job === b), 10_000, 'job aborted')).toMatchObject({ user: ADMIN.name, data: { via: 'job_end' } });
    expect(await released(h.site, b)).toMatchObject({ data: { code: 'E_RUNTIME_ABORTED' } });
  });
});
