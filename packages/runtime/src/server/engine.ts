import { setMaxListeners } from 'node:events';
import { FlareRuntimeError, silentLogger, type AggregationScheme, type AuditHook, type Identity, type Logger } from '@flare/core';
import { AttestationChecks } from '../attestation/checks.js';
import { AttestationGate, type AttestationOptions, type AttestationOutcome } from '../attestation/gate.js';
import { auditor } from '../audit.js';
import { resolveRuntimeLimits, type ResolvedRuntimeLimits, type RuntimeLimits } from '../defaults.js';
import { reasonOf, type Reason } from '../errors.js';
import { EventBus } from '../event-bus.js';
import { isSite, type ChannelServer, type PeerChannel } from '../protocol/channel.js';
import { decodeAnchor, encodeAnchor, type AnchorLog } from '../protocol/anchors.js';
import type { JobTrust } from '../protocol/job-trust.js';
import { adminIdentity, outgoing, parseMessage, wireIdentity, type Message } from '../protocol/messages.js';
import { parseAggregatorSpec, DEFAULT_AGGREGATOR_SPEC } from '@flare/aggregator';
import type { Crl } from '@flare/pki';
import { parseWorkflowArgs } from '../workflows/args.js';
import { crossSiteEval } from '../workflows/cross-site-eval.js';
import { cyclic } from '../workflows/cyclic.js';
import { scatterAndGather } from '../workflows/scatter-gather.js';
import type { Workflow } from '../workflows/workflow.js';
import type { ActiveJob } from './active-job.js';
import { AdminApi, type Authorizer } from './admin-api.js';
import { DEFAULT_AGGREGATION_POLICY, aggregatorSpecFor, aggregatorState, policyAggregator, type AggregationPolicy } from './aggregation-policy.js';
import { Deployer } from './deployer.js';
import { LiveSessions, type CrlApplied } from './sessions.js';
import type { RelayTree } from './relay-contributions.js';
import { RelayView } from './relay-status.js';
import { runJob, type AggregatorFactory } from './job-runner.js';
import { JobStore, type CheckpointHead, type JobRecord, type RoundRecord } from './job-store.js';
import { SiteRegistry } from './registry.js';
import { Scheduler, type QueuedJob } from './scheduler.js';
import { TaskDispatcher } from './tasks.js';

/** Options of {@link ServerEngine.start}. */
export interface ServerEngineOptions {
  /** The server's name (its certificate CN) and org. */
  readonly name: string;
  readonly org: string;
  /** Folder for the job store (`<workspace>/jobs`). */
  readonly workspace: string;
  /** Authenticated channels from sites and admins. */
  readonly listener: ChannelServer;
  /** The server's own authorization of admin commands (its authorization.json). */
  readonly authorize: Authorizer;
  /**
   * The server's aggregation policy (its `local/aggregation.json`, `parseAggregationPolicy`): the aggregator of
   * a job that names none (default FedAvg with the adaptive norm bound), what every job's aggregator must do
   * (default: a norm bound or a robust aggregator), a cap on the steps one site's update counts with.
   */
  readonly aggregation?: AggregationPolicy;
  /** Makes a job's plaintext aggregator instead (default: @flare/aggregator's `createAggregator` under `aggregation`). */
  readonly aggregator?: AggregatorFactory;
  /** Aggregation of updates the server cannot read (e.g. `heAggregationScheme(serverContext)` of @flare/filters-he). */
  readonly schemes?: readonly AggregationScheme[];
  /**
   * Workflows this server runs besides the built-in ones (scatter_and_gather, cross_site_eval, cyclic,
   * secure_aggregation), by their `name`; one with a built-in name replaces it.
   */
  readonly workflows?: readonly Workflow[];
  /**
   * Attestation of sites (and of this server, for sites that ask): the server's policy for sites (from its
   * kit), its attesters, trust anchors, re-check interval. Sites are checked at login, before each job deploy
   * and periodically; a failure refuses or drops the site with an `attestation_refused` audit event.
   */
  readonly attestation?: AttestationOptions;
  readonly audit?: AuditHook;
  /** The last lines of the server's audit log, for `flare admin audit`. */
  readonly auditTail?: (lines: number) => Promise<string[]>;
  readonly logger?: Logger;
  readonly events?: EventBus;
  /** Timers and limits (see RUNTIME_DEFAULTS). */
  readonly limits?: RuntimeLimits;
  /** Called after each completed round (e.g. for a progress display). */
  readonly onRound?: (job: string, record: RoundRecord) => void;
  /**
   * Checks every submitted job's and every abort's signature here too (`jobTrustFromKit` of the server's kit),
   * and that the admin who sends it signed it: the admin learns of a bad signature at submit. Sites verify
   * every job and abort themselves whether or not this is set.
   */
  readonly jobTrust?: JobTrust;
  /**
   * The key the job store authenticates checkpoints and job state with (`checkpointKeyFromKit(kit.privateKey)`,
   * as `flare server` does): a checkpoint this key did not write is refused, audited, and the one before it used.
   */
  readonly checkpointKey?: Uint8Array;
  /**
   * The newest root-signed CRL this server holds (PEM; a `CrlStore`'s current one): handed to every site in
   * its welcome, so a revocation reaches the federation without re-provisioning. Each site keeps it only when
   * newer than what it already accepted.
   */
  readonly crl?: () => string | undefined;
  /**
   * This server's audit log for the anchor exchange (@flare/audit's `AuditLog`): each site's anchor is recorded
   * here (a rollback of a site's log is audited `audit_anchor_rollback`), and each site gets this log's anchor back.
   */
  readonly anchors?: AnchorLog;
  /**
   * The aggregating relays below this server with the sites provisioned below each (`relayTreeOf(kit)`): a
   * relay's update counts with at most its named sites' step caps, and status shows its sites behind it.
   */
  readonly relays?: RelayTree;
  /**
   * The newest checkpoint of each job this server's audit log recorded (`checkpointHeadsFromAudit` over its
   * events, as `flare server` reads them at start): a job whose checkpoint on disk is older (an authentic copy
   * put back) is not resumed from it but FAILS with E_RUNTIME_CHECKPOINT_ROLLBACK (`checkpoint_refused`). The
   * log is protected against rollback by the anchors the sites keep of it.
   */
  readonly checkpointHeads?: ReadonlyMap<string, CheckpointHead>;
}

/**
 * The federation server, a façade over its parts: the site registry with liveness, the job store, the
 * scheduler's queue, the deployer (each site decides under its own policy), the job runner (workflow,
 * aggregation, checkpoints, the end of a job told to every site), the task dispatcher and the admin API. A
 * restarted server resumes every RUNNING job from its last checkpoint once its sites reconnect; a site that
 * reconnects while a job runs is offered it again.
 *
 * @example
 * ```ts
 * const server = await ServerEngine.start({ name: 'server', org: 'nvidia', workspace, listener, authorize, audit: log.append });
 * ```
 */
export class ServerEngine {
  readonly store: JobStore;
  readonly registry: SiteRegistry;
  readonly #o: ServerEngineOptions;
  readonly #limits: ResolvedRuntimeLimits;
  readonly #log: Logger;
  readonly #audit: ReturnType<typeof auditor>;
  readonly #events: EventBus;
  readonly #active = new Map<string, ActiveJob>();
  readonly #running = new Set<Promise<void>>();
  /** The newest checkpoint of each job: from the audit log at start, then each one saved. */
  readonly #heads = new Map<string, CheckpointHead>();
  readonly #tasks: TaskDispatcher;
  readonly #checks: AttestationChecks;
  readonly #deployer: Deployer;
  readonly #scheduler: Scheduler;
  readonly #admin: AdminApi;
  readonly #workflows: ReadonlyMap<string, Workflow>;
  /** Sites refused by attestation (they will not come back by waiting). */
  readonly #attestRefused = new Map<string, Reason>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #relayView: RelayView;
  readonly #sessions: LiveSessions;

  private constructor(o: ServerEngineOptions, store: JobStore) {
    this.#o = o;
    this.store = store;
    this.#limits = resolveRuntimeLimits(o.limits);
    this.#log = o.logger ?? silentLogger;
    this.#audit = auditor(o.audit);
    this.#events = o.events ?? new EventBus();
    this.#sessions = new LiveSessions({ audit: this.#audit, logger: this.#log });
    this.registry = new SiteRegistry({ timeoutMs: this.#limits.heartbeatTimeoutMs, sweepIntervalMs: this.#limits.schedulerIntervalMs });
    this.#relayView = new RelayView(o.relays ?? new Map());
    this.#tasks = new TaskDispatcher(this.registry);
    const builtIn = [scatterAndGather, crossSiteEval, cyclic];
    this.#workflows = new Map([...builtIn, ...(o.workflows ?? [])].map((w) => [w.name, w] as const));
    this.#checks = new AttestationChecks(new AttestationGate(o.attestation, o.name, this.#audit), this.#audit, this.#log);
    const refuseAttestation = (ch: PeerChannel, v: AttestationOutcome, when: string): Promise<void> => this.#refuseAttestation(ch, v, when);
    this.#deployer = new Deployer({ registry: this.registry, store, attestation: this.#checks, audit: this.#audit, logger: this.#log, events: this.#events, timeoutMs: this.#limits.deployTimeoutMs, refuseAttestation });
    this.#scheduler = new Scheduler({
      registry: this.registry,
      active: this.#active,
      maxRunning: this.#limits.maxRunningJobs,
      deployWaitMs: this.#limits.deployWaitMs,
      refusedForGood: (s) => this.#attestRefused.has(s),
      start: (job, present) => this.#start(job, present),
    });
    this.#admin = new AdminApi({
      store,
      registry: this.registry,
      active: this.#active,
      authorize: o.authorize,
      limits: this.#limits,
      audit: this.#audit,
      logger: this.#log,
      ...(o.auditTail === undefined ? {} : { auditTail: o.auditTail }),
      relaySightings: () => this.#relayView.sightings(this.registry),
      submitted: (record, stored) => {
        this.#scheduler.add({ id: record.id, ...stored, submitter: adminIdentity(record.submitter), submittedAt: record.submitted_at, resuming: false });
        this.#tick();
      },
      abort: (id, by, ref, signature) => this.#abort(id, by, ref, signature),
      ...(o.jobTrust === undefined ? {} : { jobTrust: o.jobTrust }),
      admissible: (definition) => {
        const workflow = this.#workflows.get(definition.workflow);
        if (workflow === undefined) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: workflow '${definition.workflow}' is not one this server runs (${[...this.#workflows.keys()].join(', ')})`);
        const policy = o.aggregation ?? DEFAULT_AGGREGATION_POLICY;
        const args = parseWorkflowArgs(workflow.args, definition);
        // The workflow's own rules first: it knows why a combination cannot work (secure aggregation and a norm bound).
        workflow.check?.({
          definition,
          args,
          aggregator: o.aggregator !== undefined ? undefined : (definition.aggregator ?? policy.default ?? parseAggregatorSpec(DEFAULT_AGGREGATOR_SPEC)),
          aggregationRequire: o.aggregator !== undefined ? undefined : policy.require,
        });
        if (o.aggregator === undefined) aggregatorSpecFor(definition, policy);
      },
    });
  }

  /** Opens the job store, queues its open jobs, starts accepting channels and the scheduler. */
  static async start(o: ServerEngineOptions): Promise<ServerEngine> {
    const engine = new ServerEngine(o, await JobStore.open(o.workspace, o.checkpointKey === undefined ? {} : { key: o.checkpointKey }));
    for (const [job, head] of o.checkpointHeads ?? []) engine.#heads.set(job, head);
    let resumable = 0;
    for (const r of await engine.store.list()) {
      if (r.status !== 'SUBMITTED' && r.status !== 'RUNNING') continue;
      const stored = await engine.store.definition(r.id).catch(() => undefined);
      if (stored === undefined) continue;
      engine.#scheduler.add({ id: r.id, ...stored, submitter: adminIdentity(r.submitter), submittedAt: r.submitted_at, resuming: r.status === 'RUNNING' });
      if (r.status === 'RUNNING') {
        resumable += 1;
        engine.#audit({ action: 'job_resume_pending', job: r.id, msg: `job ${r.name} resumes after round ${r.rounds_done - 1} when its sites reconnect` });
      }
    }
    o.listener.onChannel((ch) => engine.#accept(ch));
    engine.#timer = setInterval(() => engine.#tick(), engine.#limits.schedulerIntervalMs);
    engine.#timer.unref();
    engine.#audit({ action: 'server_started', msg: `server ${o.name} started`, data: { resumable, schemes: (o.schemes ?? []).map((s) => s.name), attestation: engine.#checks.active ? [...(o.attestation?.policy?.require ?? [])] : [] } });
    return engine;
  }

  /** Stops scheduling, cancels running workflows (they stay RUNNING on disk, to resume) and closes the listener. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#checks.cancelAll();
    const stop = new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'server shutting down');
    for (const a of this.#active.values()) a.abort.abort(stop);
    this.#tasks.failAll(stop);
    await Promise.allSettled([...this.#running]);
    for (const n of this.registry.names()) this.registry.get(n)?.channel.close();
    await this.#o.listener.close();
  }

  /**
   * Takes effect of a newer CRL the caller accepted (root-signed and newer: a `CrlStore`, see `watchCrlFile`):
   * every live session whose certificate it revokes (sites, relays, admins) is cut at once with E_CERT_REVOKED
   * and audited (`session_revoked`, naming the participant and serial), so is every session that came through a
   * forwarding relay it revokes (E_RUNTIME_RELAY_REVOKED, naming the relay), and every connected site and relay is
   * sent the CRL. Logins are checked against the caller's newest CRL (`crl`), so the cut participant stays out.
   */
  applyCrl(crl: Crl): CrlApplied {
    return this.#sessions.applyCrl(crl);
  }

  /** Resolves when the job reaches FINISHED, FAILED or ABORTED (polls the store; bounded by `timeoutMs`). */
  async waitForJob(id: string, timeoutMs: number): Promise<JobRecord> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.store.get(id);
      if ((r.status === 'FINISHED' || r.status === 'FAILED' || r.status === 'ABORTED') && !this.#active.has(id)) return r;
      if (Date.now() > end) throw new FlareRuntimeError('E_RUNTIME_TIMEOUT', `job ${id} still ${r.status} after ${timeoutMs} ms`);
      await new Promise((r2) => setTimeout(r2, 50));
    }
  }

  #tick(): void {
    if (this.#closed) return;
    for (const n of this.registry.sweep()) this.#siteGone(n, `site ${n} missed its heartbeats and was dropped`);
    this.#scheduler.tick();
    // Sites that came back (or had no room before) are offered the jobs that run now. The connected names are
    // listed once per tick: listing (and sorting) them per site made a tick cost N² at a thousand sites.
    if (this.#active.size === 0) return;
    const connected = this.registry.names();
    for (const a of this.#active.values()) {
      const named = a.definition.deploy.includes('@ALL') ? connected : a.definition.deploy.filter((s) => this.registry.get(s) !== undefined);
      for (const s of named) void this.#deployer.deploy(a, s);
    }
  }

  #start(q: QueuedJob, present: readonly string[]): void {
    const abort = new AbortController();
    // One listener per task in flight plus the round timer: more than Node's default warning threshold of 10.
    setMaxListeners(0, abort.signal);
    let bundle: Promise<Uint8Array> | undefined;
    const job: ActiveJob = { id: q.id, definition: q.definition, raw: q.raw, bundle: () => (bundle ??= this.store.deployBundle(q.id)), submitter: q.submitter, deployed: new Set(), deploying: new Set(), refused: new Map(), later: new Map(), abort, aborted: false };
    this.#active.set(q.id, job);
    const run = runJob(this.#runnerOptions(), job, present)
      .catch((e: unknown) => this.#log.error('job runner failed', { job: q.id, ...reasonOf(e) }))
      .finally(() => {
        this.#active.delete(q.id);
        this.#running.delete(run);
        this.#tick();
      });
    this.#running.add(run);
  }

  #runnerOptions(): Parameters<typeof runJob>[0] {
    return {
      registry: this.registry,
      store: this.store,
      deployer: this.#deployer,
      tasks: this.#tasks,
      workflows: this.#workflows,
      aggregator: this.#o.aggregator ?? policyAggregator(this.#o.aggregation, this.#o.relays),
      aggregatorState,
      schemes: this.#o.schemes ?? [],
      audit: this.#audit,
      logger: this.#log,
      events: this.#events,
      refusedForGood: (s) => (this.registry.get(s) === undefined ? this.#attestRefused.get(s) : undefined),
      closing: () => this.#closed,
      ...(this.#o.onRound === undefined ? {} : { onRound: this.#o.onRound }),
      checkpoints: { newest: (job) => this.#heads.get(job), saved: (job, head) => void this.#heads.set(job, head) },
    };
  }

  #abort(id: string, by: Identity, ref: string | undefined, signature: Uint8Array): void {
    this.#scheduler.remove(id);
    const a = this.#active.get(id);
    if (a === undefined) return;
    a.aborted = true;
    a.abortSignature = signature;
    a.abort.abort(new FlareRuntimeError('E_RUNTIME_ABORTED', `job ${id} aborted by ${by.name}`));
    // The admin's signed abort travels as the payload: each site obeys only that, never the server's `by`.
    for (const site of a.deployed) void this.registry.get(site)?.channel.send(outgoing({ t: 'abort', job: id, by: wireIdentity(by), ...(ref === undefined ? {} : { ref }) }), signature).catch(() => undefined);
  }

  #accept(ch: PeerChannel): void {
    if (this.#closed) return ch.close();
    if (!this.#sessions.add(ch)) return;
    const peer = ch.peer;
    ch.onMessage((h, payload) => {
      let msg: Message;
      try {
        msg = parseMessage(h);
      } catch (e) {
        this.#protocolError(ch, e);
        return;
      }
      const work = peer.type === 'admin' ? this.#onAdmin(ch, msg, payload) : isSite(peer) ? this.#onSite(ch, msg, payload) : Promise.reject(new FlareRuntimeError('E_RUNTIME_PROTOCOL', `a ${peer.type} may not connect here`));
      work.catch((e: unknown) => this.#protocolError(ch, e));
    });
    ch.onClose((reason) => {
      this.#checks.gate.forget(ch);
      // A site behind relays is reported with them: a lost relay shows as its sites lost, each naming it.
      const behind = peer.via === undefined ? '' : ` (behind relay ${peer.via.join(' > ')})`;
      // Why the connection ended (its code: idle, closed by the peer, ...), so a mass disconnect can be diagnosed.
      const why = reason === undefined ? '' : `: ${reasonOf(reason).code}: ${reasonOf(reason).message}`.slice(0, 500);
      if (isSite(peer) && this.registry.remove(peer.name, ch)) this.#siteGone(peer.name, `site ${peer.name}${behind} disconnected${why}`, peer.via);
    });
  }

  /** A site left: its tasks fail at once, it stops counting in every job; it is offered them again if it returns. */
  #siteGone(site: string, why: string, via?: readonly string[]): void {
    this.#checks.cancel(site);
    this.#audit({ action: 'client_lost', user: site, msg: why, ...(via === undefined ? {} : { data: { via: [...via] } }) });
    this.#log.warn('site disconnected', { site, reason: why });
    const e = new FlareRuntimeError('E_RUNTIME_DISCONNECTED', why);
    for (const a of this.#active.values()) a.deployed.delete(site);
    this.#tasks.failSite(site, e);
    this.#deployer.failSite(site, e);
  }

  #protocolError(ch: PeerChannel, e: unknown): void {
    const { code, message } = reasonOf(e, 'E_RUNTIME_PROTOCOL');
    this.#audit({ action: 'protocol_error', user: ch.peer.name, msg: `${code}: ${message}` });
    this.#log.warn('closing a peer after a protocol error', { peer: ch.peer.name, code });
    ch.close();
  }

  /** Refuses a site whose attestation failed: tells it why (bye with the code), closes it, does not wait for it. */
  async #refuseAttestation(ch: PeerChannel, v: AttestationOutcome, when: string): Promise<void> {
    const code = v.code ?? 'E_ATTEST_POLICY';
    this.#attestRefused.set(ch.peer.name, { code, message: v.detail.slice(0, 1000) });
    this.#checks.cancel(ch.peer.name);
    await ch.send(outgoing({ t: 'bye', reason: { code, message: `the server refused ${ch.peer.name}'s attestation evidence ${when}: ${v.detail}`.slice(0, 2000) } })).catch(() => undefined);
    ch.close();
  }

  async #onAdmin(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    if (msg.t !== 'admin') throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `an admin may not send '${msg.t}'`);
    await this.#admin.handle(ch, msg, payload);
  }

  async #onSite(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    const site = ch.peer.name;
    // Attestation runs before registration too (a site checks the server before it registers).
    if (await this.#checks.gate.handle(ch, msg, payload)) return;
    if (msg.t === 'bye') {
      this.#audit({ action: 'client_left', user: site, msg: `site ${site} left: ${msg.reason?.code ?? 'no reason'}: ${msg.reason?.message ?? ''}`.slice(0, 2000), data: { code: msg.reason?.code ?? null } });
      this.#log.warn('site left', { site, code: msg.reason?.code, reason: msg.reason?.message });
      return ch.close();
    }
    if (msg.t === 'register') return this.#register(ch, msg.resources);
    if (this.registry.get(site)?.channel !== ch) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `site ${site} sent '${msg.t}' before registering`);
    this.registry.seen(site, ch);
    switch (msg.t) {
      case 'heartbeat':
        return;
      case 'anchor':
        return this.#anchor(ch, payload);
      case 'relay_sites':
        return this.#relayView.report(site, msg.sites);
      case 'deploy_reply':
        if (!this.#deployer.reply(site, msg)) this.#audit({ action: 'late_reply_ignored', user: site, job: msg.job, msg: `deploy reply of ${site} nobody waits for` });
        return;
      case 'result':
        if (!this.#tasks.result(site, msg, payload)) {
          // A result for a task nobody waits for (its round closed, or the server restarted).
          this.#audit({ action: 'late_result_ignored', user: site, job: msg.job, ref: msg.ref, msg: `result of ${site} for round ${msg.round} has no open task`, data: { round: msg.round, site } });
        }
        return;
      case 'leave': {
        const a = this.#active.get(msg.job);
        if (a === undefined) return;
        a.deployed.delete(site);
        a.refused.set(site, msg.reason);
        this.#audit({ action: 'site_left_job', user: site, job: msg.job, ref: msg.ref, msg: `${site} left the job: ${msg.reason.code}: ${msg.reason.message}`.slice(0, 2000), data: { site, code: msg.reason.code } });
        this.#tasks.failSiteJob(site, msg.job, new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `${site} left the job: ${msg.reason.code}`));
        await this.store.update(msg.job, (r) => {
          r.refused[site] = `${msg.reason.code}: ${msg.reason.message}`.slice(0, 2000);
        });
        return;
      }
      default:
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `a site may not send '${msg.t}'`);
    }
  }

  /** A site's anchor: recorded in this server's log (a rollback is refused and audited there), answered with this server's. */
  async #anchor(ch: PeerChannel, payload: Uint8Array): Promise<void> {
    const log = this.#o.anchors;
    if (log === undefined) return;
    const site = ch.peer.name;
    try {
      log.recordAnchor(decodeAnchor(payload), { site });
    } catch (e) {
      const { code, message } = reasonOf(e);
      this.#log.error("a site's audit anchor was refused", { site, code, reason: message });
      if (code !== 'E_AUDIT_ROLLBACK') this.#audit({ action: 'anchor_refused', user: site, msg: `${code}: ${message}`.slice(0, 2000), data: { code, site } });
    }
    await ch.send(outgoing({ t: 'anchor' }), encodeAnchor(log));
  }

  async #register(ch: PeerChannel, resources: Readonly<Record<string, number>>): Promise<void> {
    const site = ch.peer.name;
    await this.#events.emit('before-register', { peer: ch.peer, resources });
    if (this.#checks.active) {
      const v = await this.#checks.check(ch, 'login', 'at login');
      if (!v.ok) return this.#refuseAttestation(ch, v, 'at login');
      this.#attestRefused.delete(site);
    }
    const old = this.registry.register(site, ch.peer.org, ch, resources);
    // A reconnecting site's old connection is gone: what it owed fails now, not at a timeout.
    if (old !== undefined && old.channel !== ch) this.#siteGone(site, `site ${site} reconnected`);
    this.#audit({ action: 'client_registered', user: site, msg: `site ${site} (${ch.peer.org}) registered`, data: { resources, ...(ch.peer.via === undefined ? {} : { via: [...ch.peer.via] }) } });
    this.#log.info('site registered', { site });
    // The welcome carries the newest CRL (inside the authenticated session): sites learn revocations at login.
    const crl = this.#o.crl?.();
    await ch.send(outgoing({ t: 'welcome' }), crl === undefined ? undefined : new TextEncoder().encode(crl));
    this.#checks.schedule(site, ch, () => !this.#closed && this.registry.get(site)?.channel === ch, (v) => this.#refuseAttestation(ch, v, 'at a periodic check'));
    this.#tick();
  }
}
