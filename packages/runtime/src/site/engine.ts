import { AttestError, FlareError, FlareRuntimeError, PkiError, PolicyError, isFlareErrorCode, silentLogger, type AuditHook, type Logger } from '@flare/core';
import type { Crl, CrlStore } from '@flare/pki';
import { admitAbort } from '@flare/policy';
import { AttestationChecks } from '../attestation/checks.js';
import { AttestationGate, attestationError, type AttestationOptions, type AttestationOutcome } from '../attestation/gate.js';
import { auditor } from '../audit.js';
import { resolveRuntimeLimits, type ResolvedRuntimeLimits, type RuntimeLimits } from '../defaults.js';
import { reasonOf, type Reason } from '../errors.js';
import { EventBus } from '../event-bus.js';
import type { PeerChannel, ServerLink } from '../protocol/channel.js';
import { decodeAnchor, encodeAnchor, type AnchorLog } from '../protocol/anchors.js';
import { receivedSignature } from '../protocol/job-trust.js';
import { outgoing, parseMessage, type Message, type MessageOf } from '../protocol/messages.js';
import { MAX_CRL_FILE_BYTES } from '../server/crl-watch.js';
import { crossSiteEvalSite } from '../workflows/cross-site-eval-site.js';
import { cyclicSite } from '../workflows/cyclic-site.js';
import { scatterAndGatherSite } from '../workflows/scatter-gather.js';
import type { SiteWorkflow } from '../workflows/workflow.js';
import { SiteJobLedger, type JobLedgerEntry } from './job-ledger.js';
import { SiteJobs } from './jobs.js';
import { resourceReport, type FilterRegistry, type LearnerFactory, type SitePolicy } from './policy.js';
import { runTask } from './task-runner.js';

/** Options of {@link ClientEngine.start}. */
export interface ClientEngineOptions {
  /** This site's name and org (from its kit). */
  readonly site: { readonly name: string; readonly org: string };
  /** Its way to the server: reconnects by itself (`linkToServer`; `memoryLink` in tests). */
  readonly link: ServerLink;
  /** This site's own policy (`sitePolicyFromFiles`): it decides every job itself. */
  readonly policy: SitePolicy;
  /** Learners this site can build, by registered name. */
  readonly learners: ReadonlyMap<string, LearnerFactory<unknown>>;
  /** Filters this site can build, by registered name (DP, exclude-vars, HE, ...). */
  readonly filters: FilterRegistry;
  /**
   * Workflows this site takes part in besides the built-in ones (scatter_and_gather, cross_site_eval, cyclic);
   * secure aggregation needs the site's identity: add `secureAggregationSite({ ... })` here.
   */
  readonly workflows?: readonly SiteWorkflow[];
  /** Folder private to this site (filter state such as DP budgets, and one folder per job). */
  readonly workspace: string;
  /** Keep each job's folder after the job ends (default false: removed). */
  readonly keepJobWorkspaces?: boolean;
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  readonly events?: EventBus;
  /** Timers and limits (see RUNTIME_DEFAULTS): heartbeatMs, welcomeTimeoutMs, job bundle limits. */
  readonly limits?: RuntimeLimits;
  /**
   * Attestation of the server (and of this site, when the server asks): this site's policy for the server
   * (from its kit), its attesters, trust anchors, re-check interval. The server is checked at login, before
   * each job is accepted and periodically; a failure stops this site (no reconnect) with an
   * `attestation_refused` audit event, and `stopReason` says why.
   */
  readonly attestation?: AttestationOptions;
  /**
   * This site's memory of the newest CRL (@flare/pki's `CrlStore`, persisted in its workspace): a CRL the server
   * hands over at login is kept only when newer (`crl_updated`); an older one is refused (`crl_refused`,
   * E_CRL_ROLLBACK). So is one sent while connected (a `crl` message, when the server accepted a newer one).
   * Job signatures are checked against it when `jobTrust` reads it.
   */
  readonly crls?: Pick<CrlStore, 'accept'>;
  /** Called with each newer CRL `crls` accepted from the server (an aggregating relay passes it on to its sites). */
  readonly onCrl?: (crl: Crl) => void;
  /**
   * This site's audit log for the anchor exchange (@flare/audit's `AuditLog`): its anchor goes to the server at
   * every login and every `anchorIntervalMs`; the server's anchor is recorded here (a rollback of the server's
   * log is audited `audit_anchor_rollback`).
   */
  readonly anchors?: AnchorLog;
  /** How often the site sends its anchor while connected (default 10 minutes). */
  readonly anchorIntervalMs?: number;
  /**
   * The longest time between an admin signing a job and this site first meeting it (default 7 days): an older
   * job is refused (E_POLICY_JOB_EXPIRED). The site remembers the jobs it met in `<workspace>/job-ledger.json`,
   * so a job it ran to its end or refused is never run again (E_POLICY_JOB_REPLAYED); this window bounds that
   * memory.
   */
  readonly maxJobAgeMs?: number;
  /**
   * The jobs this site's audit log recorded (`jobLedgerFromAudit` over its events, read before the log is
   * reopened): a job-ledger.json that lacks any of them, or holds an older state, was deleted or rolled back;
   * the site restores them (`job_ledger_repaired`, E_RUNTIME_JOB_LEDGER_ROLLBACK) and so still refuses their
   * replay. Every ledger change is recorded in the log (`job_seen`) through `audit`.
   */
  readonly auditedJobs?: ReadonlyMap<string, JobLedgerEntry>;
}

/** Default of {@link ClientEngineOptions.maxJobAgeMs}: 7 days. */
export const DEFAULT_MAX_JOB_AGE_MS = 7 * 24 * 3600_000;

/** Codes of a `bye` that end the site for good: the server refused it inside the authenticated session. */
const isFinalBye = (code: string): boolean => code.startsWith('E_ATTEST_') || code === 'E_RUNTIME_ATTESTATION_UNBOUND';

/**
 * A site: keeps a connection to the server (reconnecting with backoff, for as long as its link allows),
 * registers with what its resources.json gives jobs, heartbeats, decides every job under its own policy
 * (@flare/policy), runs the tasks of the jobs it admitted, and releases each job when the server says it
 * ended, when its wall time runs out, or when the server goes away (a job is offered again on reconnect). It
 * stops only when closed, when its link gives up, or when a refusal arrives inside the authenticated session
 * (attestation): `done` resolves then, and `stopReason` says why.
 */
export class ClientEngine {
  readonly #o: ClientEngineOptions;
  readonly #limits: ResolvedRuntimeLimits;
  readonly #log: Logger;
  readonly #audit: ReturnType<typeof auditor>;
  readonly #events: EventBus;
  readonly #jobs: SiteJobs;
  readonly #checks: AttestationChecks;
  #channel: PeerChannel | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #anchorTimer: NodeJS.Timeout | undefined;
  #stopReason: FlareError | undefined;
  #closed = false;
  #registered: Array<() => void> = [];
  /** Resolves when the engine stops for good (closed, its link gave up, or a final refusal). */
  readonly done: Promise<void>;
  #finish: () => void = () => undefined;

  private constructor(o: ClientEngineOptions, ledger: SiteJobLedger, maxJobAgeMs: number) {
    this.#o = o;
    this.#limits = resolveRuntimeLimits(o.limits);
    this.#log = o.logger ?? silentLogger;
    this.#audit = auditor(o.audit);
    this.#events = o.events ?? new EventBus();
    this.#checks = new AttestationChecks(new AttestationGate(o.attestation, o.site.name, this.#audit), this.#audit, this.#log);
    this.#jobs = new SiteJobs({
      site: o.site,
      workspace: o.workspace,
      policy: o.policy,
      learners: o.learners,
      filters: o.filters,
      workflows: new Map([scatterAndGatherSite, crossSiteEvalSite, cyclicSite, ...(o.workflows ?? [])].map((w) => [w.name, w] as const)),
      limits: this.#limits,
      keepJobWorkspaces: o.keepJobWorkspaces ?? false,
      audit: this.#audit,
      logger: this.#log,
      events: this.#events,
      onWallTime: (job, reason) => void this.#leave(job.id, reason),
      ledger,
      maxJobAgeMs,
    });
    this.done = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  /**
   * Starts the site: opens its job ledger, then connects (and reconnects) through its link; see {@link registered}.
   * @throws FlareRuntimeError E_RUNTIME_WORKSPACE when the workspace's job-ledger.json is not one this site wrote.
   */
  static async start(o: ClientEngineOptions): Promise<ClientEngine> {
    const maxJobAgeMs = o.maxJobAgeMs ?? DEFAULT_MAX_JOB_AGE_MS;
    if (!(maxJobAgeMs > 0)) throw new RangeError(`"maxJobAgeMs" expected a positive number of ms, got ${String(o.maxJobAgeMs)}`);
    const ledger = await SiteJobLedger.open(o.workspace, { maxAgeMs: maxJobAgeMs, audit: auditor(o.audit), ...(o.auditedJobs === undefined ? {} : { audited: o.auditedJobs }) });
    const engine = new ClientEngine(o, ledger, maxJobAgeMs);
    if (ledger.repaired.length > 0) {
      engine.#log.error('job-ledger.json lacked jobs the audit log recorded (deleted or rolled back): restored from the audit log', { code: 'E_RUNTIME_JOB_LEDGER_ROLLBACK', jobs: ledger.repaired.slice(0, 32) });
    }
    o.link.onGiveUp((e) => engine.#stopWith(e));
    o.link.onRetry?.(({ delayMs, error }) => engine.#log.warn('cannot reach the server; retrying', { code: error.code, reason: error.message, retryInMs: delayMs }));
    o.link.onChannel((ch) => void engine.#attach(ch));
    return engine;
  }

  /** Resolves when the site is registered with the server (now, or at its next registration), or rejects after `timeoutMs` or when it stops. */
  registered(timeoutMs = 30_000): Promise<void> {
    if (this.#channel !== undefined && this.#heartbeat !== undefined) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new FlareRuntimeError('E_RUNTIME_TIMEOUT', `${this.#o.site.name} did not register within ${timeoutMs} ms`)), timeoutMs);
      void this.done.then(() => reject(this.#stopReason ?? new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'the site stopped')));
      this.#registered.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Jobs deployed here now. */
  jobs(): string[] {
    return this.#jobs.ids();
  }

  /** Why the site stopped by itself (its link gave up, a final refusal), once `done` resolved for that reason. */
  get stopReason(): FlareError | undefined {
    return this.#stopReason;
  }

  /** Stops the link and heartbeats, ends every job here (releasing what they hold) and closes the channel. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#anchorTimer);
    this.#checks.cancelAll();
    await this.#o.link.stop();
    await this.#jobs.endAll({ code: 'E_RUNTIME_DISCONNECTED', message: 'the site is stopping' });
    this.#channel?.close();
    this.#finish();
  }

  /** Ends the site for good (no reconnect), remembering why. */
  #stopWith(e: FlareError): void {
    if (this.#closed) return;
    this.#stopReason = e;
    this.#audit({ action: 'site_stopped', msg: `${e.code}: ${e.message}`.slice(0, 2000), data: { code: e.code } });
    this.#log.error('site stopped', { code: e.code, reason: e.message });
    void this.close();
  }

  /** This site refuses the server's attestation: tells it why (bye with the code) and stops. */
  async #refuseServer(ch: PeerChannel, v: AttestationOutcome, when: string): Promise<void> {
    const e = attestationError({ ...v, detail: `${this.#o.site.name} refused the server's attestation evidence ${when}: ${v.detail}` }, `server ${ch.peer.name}`);
    await ch.send(outgoing({ t: 'bye', reason: { code: e.code, message: e.message.slice(0, 2000) } })).catch(() => undefined);
    this.#stopWith(e);
  }

  /** A `bye` inside the authenticated session: final for an attestation refusal, else the link reconnects. */
  #bye(reason: Reason | undefined): void {
    const code = reason?.code ?? '';
    if (!isFlareErrorCode(code) || !isFinalBye(code)) {
      this.#log.warn('the server said bye', { code, reason: reason?.message });
      return;
    }
    const message = (reason?.message ?? 'the server refused this site').slice(0, 2000);
    this.#audit({ action: 'attestation_refused_by_peer', msg: `${code}: ${message}`, data: { code } });
    this.#stopWith(code.startsWith('E_ATTEST_') ? new AttestError(code as ConstructorParameters<typeof AttestError>[0], message) : new FlareError(code, message));
  }

  async #attach(ch: PeerChannel): Promise<void> {
    if (this.#closed) return ch.close();
    this.#channel = ch;
    let welcome: (payload: Uint8Array) => void = () => undefined;
    const welcomed = new Promise<Uint8Array>((resolve) => {
      welcome = resolve;
    });
    ch.onMessage((h, payload) => {
      let msg: Message;
      try {
        msg = parseMessage(h);
      } catch (e) {
        this.#audit({ action: 'protocol_error', msg: reasonOf(e).message });
        return ch.close();
      }
      if (msg.t === 'welcome') return welcome(payload);
      if (msg.t === 'bye') return this.#bye(msg.reason);
      void this.#onMessage(ch, msg, payload).catch((e: unknown) => this.#log.error('message handling failed', { ...reasonOf(e) }));
    });
    ch.onClose(() => {
      this.#checks.gate.forget(ch);
      if (this.#channel !== ch) return;
      this.#channel = undefined;
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
      clearInterval(this.#anchorTimer);
      this.#anchorTimer = undefined;
      this.#checks.cancel('server');
      if (this.#closed) return;
      this.#audit({ action: 'server_lost', msg: 'connection to the server lost; reconnecting' });
      this.#log.warn('connection to the server lost; reconnecting');
      // Nothing can be delivered without the server: jobs end here, and are offered again on reconnect.
      void this.#jobs.endAll({ code: 'E_RUNTIME_DISCONNECTED', message: 'the connection to the server was lost' });
    });
    try {
      if (this.#checks.active) {
        const v = await this.#checks.check(ch, 'login', 'at login');
        if (!v.ok) return await this.#refuseServer(ch, v, 'at login');
      }
      await ch.send(outgoing({ t: 'register', resources: resourceReport(this.#o.policy) }));
      const timeoutMs = this.#limits.welcomeTimeoutMs + this.#checks.gate.checkTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), timeoutMs);
      });
      // A final refusal (a `bye`) closes the site while it waits: stop waiting then, so no timer keeps the process alive.
      const how = await Promise.race([welcomed, late, this.done.then(() => 'closed' as const)]);
      clearTimeout(timer);
      if (how === 'closed') return;
      if (how === 'late') throw new FlareRuntimeError('E_RUNTIME_TIMEOUT', `the server did not welcome ${this.#o.site.name} within ${timeoutMs} ms`);
      await this.#takeCrl(how);
    } catch (e) {
      if (this.#closed) return;
      this.#log.warn('registration failed; reconnecting', { ...reasonOf(e) });
      // Closing makes the link dial again with backoff.
      return ch.close();
    }
    if (this.#channel !== ch || this.#closed) return;
    this.#audit({ action: 'registered', msg: `site ${this.#o.site.name} registered with the server` });
    this.#log.info('registered with the server', { site: this.#o.site.name });
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => void ch.send(outgoing({ t: 'heartbeat' })).catch(() => undefined), this.#limits.heartbeatMs);
    this.#heartbeat.unref();
    if (this.#o.anchors !== undefined) {
      // This site's anchor now and periodically: the server records it, so a later rollback of this log shows.
      this.#sendAnchor(ch);
      clearInterval(this.#anchorTimer);
      this.#anchorTimer = setInterval(() => this.#sendAnchor(ch), this.#o.anchorIntervalMs ?? 600_000);
      this.#anchorTimer.unref();
    }
    this.#checks.schedule('server', ch, () => !this.#closed && this.#channel === ch, (v) => this.#refuseServer(ch, v, 'at a periodic check'));
    for (const r of this.#registered.splice(0)) r();
  }

  async #onMessage(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    if (await this.#checks.gate.handle(ch, msg, payload)) return;
    switch (msg.t) {
      case 'deploy':
        return this.#deploy(ch, msg, payload);
      case 'task': {
        const job = this.#jobs.get(msg.job);
        if (job === undefined) {
          const ref = this.#audit({ action: 'task_refused', job: msg.job, ref: msg.ref, msg: 'task for a job not deployed here' });
          await ch.send(outgoing({ t: 'result', job: msg.job, round: msg.round, task: msg.task, kind: msg.kind, ok: false, ...(ref === undefined ? {} : { ref }), error: { code: 'E_RUNTIME_JOB_NOT_FOUND', message: 'job not deployed at this site' }, metrics: {} }));
          return;
        }
        const opts = { site: this.#o.site.name, audit: this.#audit, logger: this.#log, events: this.#events };
        job.queue = job.queue.then(() => runTask(opts, ch, job, msg, payload));
        return job.queue;
      }
      case 'abort':
        return this.#abort(msg, payload, 'abort');
      case 'anchor':
        return this.#recordAnchor(ch, payload);
      case 'crl':
        // A revocation while connected: kept only when root-signed and newer than this site's (CrlStore).
        return this.#takeCrl(payload);
      case 'job_end':
        // "Aborted" is an admin's word: the job_end must carry the admin's signed abort, checked like an abort.
        if (msg.status === 'ABORTED') return this.#abort({ job: msg.job, ...(msg.ref === undefined ? {} : { ref: msg.ref }) }, payload, 'job_end');
        return this.#jobs.end(msg.job, msg.error ?? { code: msg.status, message: `the job ${msg.status.toLowerCase()} at the server` }, msg.ref);
      default:
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `the server may not send '${msg.t}'`);
    }
  }

  /**
   * An abort from the server, or a `job_end` ABORTED: obeyed as an abort only when it carries an abort signed for
   * this project and job by an admin certificate the project trusts, whom this site's own policy grants
   * `abort_job` for this job's submitter (@flare/policy's `admitAbort`). The server's `by` is never trusted; a
   * refusal is audited with its code and the server's name. A refused `abort` leaves the job running; a refused
   * `job_end` still ends the job here (the server has stopped it: nothing more will come), but under the
   * refusal's code, never as an admin's abort.
   */
  async #abort(msg: Pick<MessageOf<'abort'>, 'job' | 'ref' | 'by'>, payload: Uint8Array, via: 'abort' | 'job_end'): Promise<void> {
    const job = this.#jobs.get(msg.job);
    if (job === undefined) return;
    const trust = this.#o.policy.jobTrust;
    const claimed = msg.by === undefined ? {} : { claimed_by: `${msg.by.name} (${msg.by.org})` };
    const server = this.#channel?.peer.name;
    const audit = (e: Parameters<AuditHook>[0]): string | undefined => this.#audit({ ...e, ref: e.ref ?? msg.ref, data: { ...e.data, site: this.#o.site.name, via, ...(server === undefined ? {} : { server }), ...claimed } });
    let signer: string;
    try {
      if (trust === undefined) throw new PolicyError('E_POLICY_JOB_SIGNER', `abort of job '${msg.job}': this site has no project trust to verify signatures with`);
      const admitted = admitAbort(
        { jobId: msg.job, signature: receivedSignature(payload), submitter: job.submitter },
        { authorization: this.#o.policy.authorization(), siteOrg: this.#o.site.org, projectName: trust.project, verifyCertificate: trust.verifyCertificate, audit },
      );
      signer = admitted.signer.name;
    } catch (e) {
      const { code, message } = reasonOf(e);
      if (trust === undefined) audit({ action: 'abort_refused', job: msg.job, msg: message, data: { code } });
      this.#log.warn(via === 'abort' ? 'abort refused' : 'the server ended the job as aborted without a valid signed abort', { job: msg.job, code, reason: message });
      if (via === 'job_end') return this.#jobs.end(msg.job, { code, message: `the server ended the job as ABORTED, an abort this site refused: ${message}` }, msg.ref);
      return;
    }
    this.#audit({ action: 'job_aborted', job: msg.job, ref: msg.ref, user: signer, msg: `job aborted by ${signer} (signed)`, data: { via } });
    return this.#jobs.end(msg.job, { code: 'E_RUNTIME_ABORTED', message: `aborted by ${signer}` }, msg.ref);
  }

  async #deploy(ch: PeerChannel, msg: MessageOf<'deploy'>, payload: Uint8Array): Promise<void> {
    // The server's claim, for the audit trail only: admission takes the submitter from the job's signature.
    const submitter = { name: msg.submitter.name, org: msg.submitter.org };
    const recv = this.#audit({ action: 'deploy_received', job: msg.job, ref: msg.ref, user: submitter.name, msg: `deploy request for job ${msg.job}, submitted by ${submitter.name} as the server claims` });
    const answer = (fields: { ok: boolean; ref?: string | undefined; error?: Reason }): Promise<void> =>
      ch.send(outgoing({ t: 'deploy_reply', id: msg.id, job: msg.job, ok: fields.ok, ...(fields.ref === undefined ? {} : { ref: fields.ref }), ...(fields.error === undefined ? {} : { error: fields.error }) }));
    try {
      if (this.#checks.active) {
        // Fresh evidence from the server before this site gives it a job's updates.
        const when = `before accepting job ${msg.job}`;
        const v = await this.#checks.check(ch, `deploy:${msg.job}`, when);
        if (!v.ok) {
          const error = { code: v.code ?? 'E_ATTEST_POLICY', message: v.detail.slice(0, 1000) };
          await answer({ ok: false, ref: this.#refused(msg.job, recv, error, submitter.name), error });
          return await this.#refuseServer(ch, v, when);
        }
      }
      const job = await this.#jobs.deploy(msg.job, submitter, payload, recv);
      const ref = this.#audit({
        action: 'deploy_accepted',
        job: msg.job,
        ref: recv,
        user: job.submitter.name,
        scope: job.scope,
        msg: `job ${job.definition.name} accepted: scope ${job.scope}, learner ${job.definition.learner.name}, ${job.filters.data.length} data and ${job.filters.result.length} result filters`,
        data: { data_filters: [...job.filters.data], result_filters: [...job.filters.result] },
      });
      this.#log.info('job deployed', { job: msg.job, scope: job.scope });
      await answer({ ok: true, ref });
    } catch (e) {
      const error = reasonOf(e, 'E_RUNTIME_DEPLOY_REFUSED');
      await answer({ ok: false, ref: this.#refused(msg.job, recv, error, submitter.name), error });
    }
  }

  #refused(job: string, ref: string | undefined, error: Reason, submitter: string): string | undefined {
    this.#log.warn('job refused', { job, code: error.code, reason: error.message });
    return this.#audit({ action: 'deploy_refused', job, ref, user: submitter, msg: `${error.code}: ${error.message}`, data: { code: error.code } });
  }

  #sendAnchor(ch: PeerChannel): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeAnchor(this.#o.anchors!);
    } catch (e) {
      this.#log.warn('no audit anchor to send', { ...reasonOf(e) });
      return;
    }
    void ch.send(outgoing({ t: 'anchor' }), bytes).catch(() => undefined);
  }

  /** The server's anchor: recorded in this site's log (a rollback of the server's log is refused and audited there). */
  #recordAnchor(ch: PeerChannel, payload: Uint8Array): void {
    const log = this.#o.anchors;
    if (log === undefined) return;
    try {
      log.recordAnchor(decodeAnchor(payload), { site: ch.peer.name });
    } catch (e) {
      const { code, message } = reasonOf(e);
      this.#log.error("the server's audit anchor was refused", { code, reason: message });
      if (code !== 'E_AUDIT_ROLLBACK') this.#audit({ action: 'anchor_refused', msg: `${code}: ${message}`.slice(0, 2000), data: { code } });
    }
  }

  /**
   * The CRL the server handed over in its welcome or a `crl` message: kept when root-signed and newer than this
   * site's, refused (audited `crl_refused` with E_CRL_ROLLBACK or E_CRL_INVALID) otherwise.
   */
  async #takeCrl(payload: Uint8Array): Promise<void> {
    if (payload.byteLength === 0 || this.#o.crls === undefined) return;
    try {
      // Bounded before it is decoded: the payload is the server's word until the root's signature is checked.
      if (payload.byteLength > MAX_CRL_FILE_BYTES) throw new PkiError('E_CRL_INVALID', `the server sent ${payload.byteLength} bytes as a CRL, more than the ${MAX_CRL_FILE_BYTES} a CRL may have`);
      // The server sends the PEM text (loadCrl reads bytes as DER).
      const { crl, changed } = await this.#o.crls.accept(new TextDecoder('utf-8', { fatal: true }).decode(payload));
      if (!changed) return;
      const n = crl.crlNumber?.toString() ?? '?';
      this.#audit({ action: 'crl_updated', msg: `accepted the server's CRL number ${n} (${crl.revoked.size} revoked)`, data: { crl_number: n, revoked: crl.revoked.size } });
      this.#log.info('newer CRL from the server', { crlNumber: n });
      this.#o.onCrl?.(crl);
    } catch (e) {
      const { code, message } = reasonOf(e);
      this.#audit({ action: 'crl_refused', msg: `${code}: ${message}`.slice(0, 2000), data: { code } });
      this.#log.warn('refused the CRL the server sent', { code, reason: message });
    }
  }

  /** This site leaves a job on its own (its wall time ran out): tells the server, then ends it here. */
  async #leave(job: string, reason: Reason): Promise<void> {
    const ref = this.#audit({ action: 'job_left', job, msg: `${reason.code}: ${reason.message}`, data: { code: reason.code } });
    await this.#channel?.send(outgoing({ t: 'leave', job, reason, ...(ref === undefined ? {} : { ref }) })).catch(() => undefined);
    await this.#jobs.end(job, reason, ref);
  }
}
