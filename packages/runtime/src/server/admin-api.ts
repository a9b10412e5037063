import { FlareRuntimeError, PolicyError, identityText, type Identity, type JsonValue, type Logger } from '@flare/core';
import { verifyAbort, verifyJob } from '@flare/policy';
import type { LooseAuditEvent } from '../audit.js';
import { reasonOf } from '../errors.js';
import type { ResolvedRuntimeLimits } from '../defaults.js';
import { decodeJobBundle, signedJobFiles, type JobBundle } from '../protocol/bundle.js';
import { receivedSignature, type JobTrust } from '../protocol/job-trust.js';
import type { PeerChannel } from '../protocol/channel.js';
import { parseMetaJson, type JobDefinition } from '../protocol/job-definition.js';
import { adminIdentity, outgoing, type MessageOf } from '../protocol/messages.js';
import type { ActiveJob } from './active-job.js';
import { isJobId, type JobRecord, type JobStore } from './job-store.js';
import type { SiteRegistry } from './registry.js';
import type { RelayedSiteSighting } from './relay-status.js';

/** Where one site is with one job, as `flare admin status JOB` shows it. */
export interface SiteState {
  readonly name: string;
  /** Connected to the server now. */
  readonly connected: boolean;
  /** When the server last heard from it (ISO time), if it has since it started. */
  readonly last_seen?: string;
  /** Runs the job now. */
  readonly running: boolean;
  /** Accepted the job (now or earlier). */
  readonly deployed: boolean;
  /** Refused the job or left it, with its own code and reason (`CODE: reason`). */
  readonly refused?: string;
  /** Rounds (from 0) whose aggregate includes this site's update. */
  readonly contributions: number[];
  /** The relays its (last) connection came through, nearest the server first (absent when it connects directly). */
  readonly via?: string[];
}

/** Jobs `list` answers with when the admin names no number: the newest ones (`flare admin list --last N`, up to 10,000). */
const LIST_PAGE = 1_000;

/** Each site's state for a job: the sites it names (for `@ALL`, every site that took part or was seen). */
export function siteStates(rec: JobRecord, def: JobDefinition, registry: SiteRegistry, active: ActiveJob | undefined): SiteState[] {
  const seen = new Map(registry.sightings().map((s) => [s.name, s]));
  const named = def.deploy.includes('@ALL') ? [...new Set([...rec.sites, ...Object.keys(rec.refused), ...seen.keys()])].sort() : def.deploy;
  // Indexed once: a thousand sites over many rounds would otherwise cost a scan of every list per site.
  const deployed = new Set(rec.sites);
  const rounds = new Map<string, number[]>();
  for (const h of rec.history) for (const c of h.contributors) (rounds.get(c) ?? rounds.set(c, []).get(c)!).push(h.round);
  return named.map((name) => {
    const s = seen.get(name);
    const refused = rec.refused[name];
    return {
      name,
      connected: s?.connected === true,
      ...(s === undefined ? {} : { last_seen: s.lastSeen }),
      running: active?.deployed.has(name) === true,
      deployed: deployed.has(name),
      ...(refused === undefined ? {} : { refused }),
      contributions: rounds.get(name) ?? [],
      ...(s?.via === undefined ? {} : { via: [...s.via] }),
    };
  });
}

/**
 * Decides whether `user` (the admin on the channel) may exercise `right` (FLARE right names: submit_job,
 * list_jobs, abort_job, ...), for job commands on a job `submitter` submitted.
 */
export type Authorizer = (request: { readonly user: Identity; readonly right: string; readonly submitter?: Identity }) => boolean | Promise<boolean>;

/** What the admin API needs from the server. */
export interface AdminApiOptions {
  readonly store: JobStore;
  readonly registry: SiteRegistry;
  /** Jobs running now (which sites run them). */
  readonly active: ReadonlyMap<string, ActiveJob>;
  readonly authorize: Authorizer;
  readonly limits: ResolvedRuntimeLimits;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly auditTail?: (lines: number) => Promise<string[]>;
  /** The sites behind aggregating relays (`RelayView`), listed by `sites` and `status` after the server's own. */
  readonly relaySightings?: () => readonly RelayedSiteSighting[];
  /** A job was stored: queue it. */
  readonly submitted: (record: JobRecord, stored: { definition: JobDefinition; raw: JsonValue }) => void;
  /** Stops a job: aborts it if it runs (sending sites the admin's signed abort), drops it from the queue otherwise. */
  readonly abort: (id: string, by: Identity, ref: string | undefined, signature: Uint8Array) => void;
  /**
   * When set, the server checks every job and abort signature too, and that the admin on the channel signed
   * it: a refusal at submit rather than at every site. Sites verify in any case.
   */
  readonly jobTrust?: JobTrust;
  /** Checks a definition against what this server runs (workflow, aggregator policy). */
  readonly admissible: (definition: JobDefinition) => void;
}

/** Answers longer than this (JSON characters) travel as the reply's payload rather than in its header. */
const INLINE_REPLY_CHARS = 16 * 1024;

const identityOf = (ch: PeerChannel): Identity => ({ name: ch.peer.name, org: ch.peer.org, type: ch.peer.type, ...(ch.peer.role === undefined ? {} : { role: ch.peer.role }) });

/**
 * The admin commands over an admin's authenticated channel: each is authorized by the server's own policy
 * (its authorization.json, FLARE right names) before it acts, and every refusal is audited and answered with
 * its code. Jobs arrive as a bundle in the message payload (meta.json, model.safetensors, custom/), bounded.
 */
export class AdminApi {
  readonly #o: AdminApiOptions;

  constructor(o: AdminApiOptions) {
    this.#o = o;
  }

  async #require(user: Identity, right: string, submitter?: Identity): Promise<void> {
    const ok = await this.#o.authorize(submitter === undefined ? { user, right } : { user, right, submitter });
    if (!ok) {
      this.#o.audit({ action: 'admin_refused', user: user.name, msg: `user '${user.name}' is not authorized for '${right}'` });
      throw new FlareRuntimeError('E_RUNTIME_NOT_AUTHORIZED', `user '${user.name}' is not authorized for '${right}'`);
    }
  }

  /** Answers one admin message (never throws: a refusal is the reply). */
  async handle(ch: PeerChannel, msg: MessageOf<'admin'>, payload: Uint8Array): Promise<void> {
    const user = identityOf(ch);
    let data: JsonValue = null;
    let out: Uint8Array | undefined;
    try {
      [data, out] = await this.#run(user, msg, payload);
      if (out === undefined) {
        // A large answer goes as the payload: headers are bounded (64 KiB), payloads by the message limit.
        const json = JSON.stringify(data);
        if (json.length > INLINE_REPLY_CHARS) return await ch.send(outgoing({ t: 'reply', id: msg.id, ok: true, body: 'json' }), new TextEncoder().encode(json));
      }
      await ch.send(outgoing({ t: 'reply', id: msg.id, ok: true, data }), out);
    } catch (e) {
      await ch.send(outgoing({ t: 'reply', id: msg.id, ok: false, error: reasonOf(e, 'E_RUNTIME_PROTOCOL') }));
    }
  }

  async #run(user: Identity, msg: MessageOf<'admin'>, payload: Uint8Array): Promise<[JsonValue, Uint8Array?]> {
    const { store } = this.#o;
    const job = async (): Promise<JobRecord> => store.get(msg.job ?? '');
    switch (msg.cmd) {
      case 'submit': {
        await this.#require(user, 'submit_job');
        if (msg.job !== undefined && !isJobId(msg.job)) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', 'a job id must be a lower-case UUID');
        const bundle = decodeJobBundle(payload, this.#o.limits);
        const { record, definition, raw } = await this.#store(user, bundle, msg.job);
        this.#o.audit({ action: 'job_submitted', user: user.name, job: record.id, msg: `job ${record.name} submitted`, data: { rounds: definition.rounds, sites: definition.deploy } });
        this.#o.logger.info('job submitted', { job: record.id, name: record.name, by: user.name });
        this.#o.submitted(record, { definition, raw });
        return [{ id: record.id }];
      }
      case 'list': {
        await this.#require(user, 'list_jobs');
        // From the store's summaries in memory, newest page only: no record is read from disk per call.
        return [(await store.summaries(msg.lines ?? LIST_PAGE)) as unknown as JsonValue];
      }
      case 'status': {
        const rec = await job();
        await this.#require(user, 'get_job_meta', adminIdentity(rec.submitter));
        const { definition } = await store.definition(rec.id);
        const behind = this.#o.relaySightings?.() ?? [];
        return [{ record: rec, sites: siteStates(rec, definition, this.#o.registry, this.#o.active.get(rec.id)), ...(behind.length === 0 ? {} : { relay_sites: behind }) } as unknown as JsonValue];
      }
      case 'abort': {
        const rec = await job();
        await this.#require(user, 'abort_job', adminIdentity(rec.submitter));
        if (rec.status !== 'SUBMITTED' && rec.status !== 'RUNNING') throw new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${rec.id} is ${rec.status}`);
        this.#checkAbort(user, rec.id, payload);
        const ref = this.#o.audit({ action: 'job_abort', user: user.name, job: rec.id, msg: `job ${rec.name} aborted by ${user.name}` });
        await store.update(rec.id, (r) => {
          r.status = 'ABORTED';
          r.ended_at = new Date().toISOString();
          r.error = { code: 'E_RUNTIME_ABORTED', message: `aborted by ${user.name}` };
        });
        this.#o.abort(rec.id, user, ref, payload);
        return [{ id: rec.id, status: 'ABORTED' }];
      }
      case 'download': {
        const rec = await job();
        await this.#require(user, 'download_job', adminIdentity(rec.submitter));
        const out = await store.result(rec.id);
        this.#o.audit({ action: 'job_downloaded', user: user.name, job: rec.id, msg: `results of ${rec.name} downloaded by ${user.name}` });
        return [{ id: rec.id, bytes: out.byteLength }, out];
      }
      case 'result': {
        const rec = await job();
        await this.#require(user, 'download_job', adminIdentity(rec.submitter));
        const value = await store.readResult(rec.id, msg.name ?? '');
        this.#o.audit({ action: 'job_result_read', user: user.name, job: rec.id, msg: `result '${msg.name ?? ''}' of ${rec.name} read by ${user.name}`, data: { name: msg.name ?? null } });
        return [value];
      }
      case 'audit': {
        await this.#require(user, 'tail');
        return [this.#o.auditTail === undefined ? [] : await this.#o.auditTail(msg.lines ?? 50)];
      }
      case 'sites': {
        await this.#require(user, 'check_status');
        return [[...this.#o.registry.sightings(), ...(this.#o.relaySightings?.() ?? [])] as unknown as JsonValue];
      }
    }
  }

  /** With a {@link AdminApiOptions.jobTrust}: the job is signed, for this id, by the admin submitting it. */
  #checkJob(user: Identity, bundle: JobBundle, id: string | undefined): void {
    const trust = this.#o.jobTrust;
    if (trust === undefined) return;
    if (id === undefined) throw new PolicyError('E_POLICY_JOB_UNSIGNED', 'the job was submitted without its id: a signed job names the id its admin chose');
    const job = verifyJob(receivedSignature(bundle.signature), signedJobFiles(bundle), { projectName: trust.project, jobId: id, verifyCertificate: trust.verifyCertificate });
    this.#signedBy(user, job.submitter, 'job', id);
  }

  /** With a {@link AdminApiOptions.jobTrust}: the abort is signed, for this job, by the admin asking. */
  #checkAbort(user: Identity, id: string, signature: Uint8Array): void {
    const trust = this.#o.jobTrust;
    if (trust === undefined) return;
    const abort = verifyAbort(receivedSignature(signature), { projectName: trust.project, jobId: id, verifyCertificate: trust.verifyCertificate });
    this.#signedBy(user, abort.signer, 'abort', id);
  }

  #signedBy(user: Identity, signer: Identity, what: string, id: string): void {
    // Name and org decide (the role is the certificate's either way); the message names both in full.
    if (signer.name === user.name && signer.org === user.org) return;
    const msg = `the ${what} of job ${id} is signed by ${identityText(signer)}, not by ${identityText(user)} who sent it`;
    this.#o.audit({ action: `${what}_refused`, user: user.name, job: id, msg, data: { code: 'E_POLICY_JOB_SIGNER', signer: signer.name } });
    throw new PolicyError('E_POLICY_JOB_SIGNER', msg);
  }

  /** Parses before storing: a definition this server cannot run is refused at submit, not at deploy. */
  async #store(user: Identity, bundle: ReturnType<typeof decodeJobBundle>, id: string | undefined): Promise<Awaited<ReturnType<JobStore['create']>>> {
    const { definition } = parseMetaJson(bundle.meta);
    if (definition.byoc !== undefined || bundle.files.size > 0) await this.#require(user, 'byoc');
    this.#checkJob(user, bundle, id);
    this.#o.admissible(definition);
    return this.#o.store.create({ bundle, submitter: user, ...(id === undefined ? {} : { id }) });
  }
}
