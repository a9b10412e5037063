import { setMaxListeners } from 'node:events';
import { FlareRuntimeError, META, type FLModel, type Identity, type JsonValue, type Logger } from '@flare/core';
import type { Crl, Kit } from '@flare/pki';
import { listen, type Connection, type ServerEndpoint, type ServerLimits } from '@flare/transport';
import { AttestationChecks } from '../attestation/checks.js';
import { AttestationGate } from '../attestation/gate.js';
import type { LooseAuditEvent } from '../audit.js';
import { reasonOf } from '../errors.js';
import { EventBus } from '../event-bus.js';
import { decodeJobBundle } from '../protocol/bundle.js';
import type { PeerChannel } from '../protocol/channel.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import { connectionChannel, RUNTIME_MAX_MESSAGE_BYTES, sessionAuthenticator, type AuthenticatedPeer } from '../protocol/network.js';
import { outgoing, parseMessage, type JobEndStatus, type Message } from '../protocol/messages.js';
import { namedSites, type ActiveJob } from '../server/active-job.js';
import { Deployer } from '../server/deployer.js';
import { JobStore } from '../server/job-store.js';
import { SiteRegistry } from '../server/registry.js';
import { RelayView } from '../server/relay-status.js';
import { LiveSessions, type CrlApplied } from '../server/sessions.js';
import { TaskDispatcher } from '../server/tasks.js';
import { relayTreeOf } from './path.js';
import { scatter } from '../workflows/scatter-gather.js';
import type { TaskResult, WorkflowContext } from '../workflows/workflow.js';
import type { ResolvedRuntimeLimits } from '../defaults.js';

/** Options of {@link SiteHub.start}. */
export interface SiteHubOptions {
  /** The aggregating relay's kit: its certificate serves its sites' logins (mtls + @flare/auth). */
  readonly kit: Kit;
  readonly port: number;
  readonly host?: string | readonly string[];
  /** The relay's job records (`<workspace>/jobs`). */
  readonly workspace: string;
  readonly limits: ResolvedRuntimeLimits;
  readonly transport?: ServerLimits;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  /** The newest CRL the relay holds (PEM), asked at every site login and sent in each welcome (default: its kit's). */
  readonly crl?: () => string | undefined;
}

/** A site's answer in a relay round, as it arrived (the relay decodes and aggregates it). */
export interface HubAnswer {
  readonly site: string;
  readonly result: TaskResult;
}

/**
 * The lower side of an aggregating relay: the server of its sites' rounds. Sites log in to the relay (their
 * kits name it as their server identity), register and heartbeat as with a server; the relay offers them the
 * jobs it admitted upstream with the job bundle exactly as the admin signed it (each site verifies the
 * signature and decides under its own policy), sends them the round's tasks, forwards the admin's signed
 * aborts and the end of each job. It is built from the server's own parts (registry, deployer, task dispatcher).
 */
export class SiteHub {
  readonly registry: SiteRegistry;
  readonly #o: SiteHubOptions;
  readonly #tasks: TaskDispatcher;
  readonly #deployer: Deployer;
  readonly #store: JobStore;
  readonly #jobs = new Map<string, ActiveJob>();
  readonly #endpoint: ServerEndpoint<AuthenticatedPeer>;
  readonly #timer: NodeJS.Timeout;
  readonly #view: RelayView;
  readonly #sessions: LiveSessions;
  /** Called when a site registers or is lost (for status and logs). */
  onChange: (site: string, present: boolean) => void = () => undefined;

  private constructor(o: SiteHubOptions, store: JobStore, endpoint: ServerEndpoint<AuthenticatedPeer>) {
    this.#o = o;
    this.#store = store;
    this.#endpoint = endpoint;
    this.registry = new SiteRegistry({ timeoutMs: o.limits.heartbeatTimeoutMs, sweepIntervalMs: o.limits.schedulerIntervalMs });
    this.#view = new RelayView(relayTreeOf(o.kit));
    this.#sessions = new LiveSessions({ audit: o.audit, logger: o.logger });
    this.#tasks = new TaskDispatcher(this.registry);
    const checks = new AttestationChecks(new AttestationGate(undefined, o.kit.participant.name, o.audit), o.audit, o.logger);
    this.#deployer = new Deployer({
      registry: this.registry,
      store,
      attestation: checks,
      audit: o.audit,
      logger: o.logger,
      events: new EventBus(),
      timeoutMs: o.limits.deployTimeoutMs,
      refuseAttestation: () => Promise.resolve(),
    });
    endpoint.on('connection', (c: Connection<AuthenticatedPeer>) => this.#accept(connectionChannel(c)));
    endpoint.on('refused', (r) => o.logger.warn('site login refused at the relay', { remote: r.remote.address, code: r.error.code, reason: r.error.message }));
    this.#timer = setInterval(() => {
      for (const n of this.registry.sweep()) this.#gone(n, `site ${n} missed its heartbeats`);
    }, o.limits.schedulerIntervalMs);
    this.#timer.unref();
  }

  /** Listens for the relay's sites. @throws TransportError for the port. */
  static async start(o: SiteHubOptions): Promise<SiteHub> {
    const store = await JobStore.open(o.workspace);
    const auth = sessionAuthenticator(o.kit, { ...(o.crl === undefined ? {} : { server: { crl: o.crl } }), audit: (e) => o.audit(e) ?? '' });
    const endpoint = await listen<AuthenticatedPeer>({
      security: 'mtls',
      tls: { certPem: o.kit.certPem, privateKey: o.kit.privateKey, caPem: o.kit.rootCaPem },
      port: o.port,
      host: o.host ?? '127.0.0.1',
      limits: { maxMessageBytes: RUNTIME_MAX_MESSAGE_BYTES, ...o.transport },
      authenticate: (c) => auth(c, o.kit),
      logger: o.logger,
    });
    return new SiteHub(o, store, endpoint);
  }

  get port(): number {
    return this.#endpoint.port;
  }

  /**
   * A newer CRL the relay accepted from upstream: its sites' sessions it revokes are cut at once (audited
   * `session_revoked`), and every other connected site is sent it (the relay re-pushes downward).
   */
  applyCrl(crl: Crl): CrlApplied {
    return this.#sessions.applyCrl(crl);
  }

  /**
   * Offers a job admitted upstream to the relay's sites (those it names, or all for `@ALL`), with its bundle
   * unchanged; resolves with the sites that accepted.
   *
   * @throws FlareRuntimeError E_RUNTIME_DEPLOY_REFUSED when no site below the relay accepted it.
   */
  async deploy(id: string, definition: JobDefinition, bundle: Uint8Array, submitter: Identity): Promise<readonly string[]> {
    let job = this.#jobs.get(id);
    if (job === undefined) {
      await this.#record(id, bundle, submitter);
      const abort = new AbortController();
      setMaxListeners(0, abort.signal);
      job = { id, definition, raw: null, bundle: () => Promise.resolve(bundle), submitter, deployed: new Set(), deploying: new Set(), refused: new Map(), later: new Map(), abort, aborted: false };
      this.#jobs.set(id, job);
    }
    const active = job;
    await Promise.all(this.#candidates(active).map((s) => this.#deployer.deploy(active, s)));
    if (active.deployed.size === 0) {
      const why = [...active.refused].map(([s, r]) => `${s}: ${r.code}`).join(', ');
      this.end(id, 'FAILED');
      throw new FlareRuntimeError('E_RUNTIME_DEPLOY_REFUSED', `no site below relay '${this.#o.kit.participant.name}' accepted job ${id}${why === '' ? ' (none connected)' : ` (${why})`}`);
    }
    return [...active.deployed].sort();
  }

  /** Stores the job as this relay received it (its own record of what it aggregated), once. */
  async #record(id: string, bundle: Uint8Array, submitter: Identity): Promise<void> {
    const known = await this.#store.get(id).then(
      () => true,
      () => false,
    );
    if (!known) await this.#store.create({ id, bundle: decodeJobBundle(bundle), submitter });
  }

  #candidates(job: ActiveJob): string[] {
    const named = namedSites(job.definition, () => this.registry.names());
    // A job that names the relay itself (or none of its sites) runs at all of them.
    const mine = named.filter((s) => this.registry.get(s) !== undefined);
    return job.definition.deploy.includes(this.#o.kit.participant.name) || mine.length === 0 ? this.registry.names() : mine;
  }

  /** The sites registered here now, and those behind the connected aggregating relays chained below: what this relay reports up. */
  reachable(): string[] {
    const relays = relayTreeOf(this.#o.kit);
    const own = this.registry.names().filter((s) => !relays.has(s));
    const chained = this.#view.sightings(this.registry).filter((s) => !s.relayLost).map((s) => s.name);
    return [...new Set([...own, ...chained])].sort();
  }

  /** The sites running job `id` now. */
  sites(id: string): string[] {
    const job = this.#jobs.get(id);
    return job === undefined ? [] : [...job.deployed].filter((s) => this.registry.get(s) !== undefined).sort();
  }

  /**
   * Sends one task to every site running the job and gathers the answers until all are in, the round timeout,
   * or `signal`; answers that fail are reported through `onFailure` with their code.
   */
  async gather(
    id: string,
    task: { readonly kind: string; readonly round: number; readonly model: FLModel; readonly data?: JsonValue },
    timeoutMs: number,
    signal: AbortSignal,
    onResult: (a: HubAnswer) => void,
    onFailure: (site: string, code: string, message: string) => void,
  ): Promise<void> {
    const sites = this.sites(id);
    // One listener on the job's signal; the round's own signal carries one per task in flight (many sites).
    const round = new AbortController();
    setMaxListeners(0, round.signal);
    const stop = (): void => round.abort(signal.reason);
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    const ctx = { signal: round.signal } as Pick<WorkflowContext, 'signal'> as WorkflowContext;
    await scatter(
      ctx,
      sites,
      timeoutMs,
      (site) => this.#tasks.send(id, site, { kind: task.kind, round: task.round, model: task.model, ...(task.data === undefined ? {} : { data: task.data }) }, round.signal),
      (site, result) => onResult({ site, result }),
      (site, e, late) => {
        if (!late) onFailure(site, reasonOf(e).code, reasonOf(e).message);
      },
    ).finally(() => signal.removeEventListener('abort', stop));
  }

  /** Forwards the admin's signed abort of a job to its sites (each checks the signature itself). */
  abort(msg: Extract<Message, { t: 'abort' }>, signature: Uint8Array): void {
    const job = this.#jobs.get(msg.job);
    if (job === undefined) return;
    job.aborted = true;
    job.abort.abort(new FlareRuntimeError('E_RUNTIME_ABORTED', `job ${msg.job} aborted upstream`));
    for (const s of job.deployed) {
      void this.registry.get(s)?.channel.send(outgoing({ t: 'abort', job: msg.job, ...(msg.by === undefined ? {} : { by: msg.by }), ...(msg.ref === undefined ? {} : { ref: msg.ref }) }), signature).catch(() => undefined);
    }
  }

  /** The job ended upstream (or here): its sites release it. */
  end(id: string, status: JobEndStatus): void {
    const job = this.#jobs.get(id);
    if (job === undefined) return;
    this.#jobs.delete(id);
    if (!job.abort.signal.aborted) job.abort.abort(new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${id} ended`));
    for (const s of new Set([...job.deployed, ...job.deploying])) {
      void this.registry.get(s)?.channel.send(outgoing({ t: 'job_end', job: id, status })).catch(() => undefined);
    }
    void this.#store
      .update(id, (r) => {
        r.status = status;
        r.ended_at = new Date().toISOString();
      })
      .catch(() => undefined);
  }

  #accept(ch: PeerChannel): void {
    if (!this.#sessions.add(ch)) return;
    const site = ch.peer.name;
    ch.onMessage((h, payload) => {
      void this.#onSite(ch, h, payload).catch((e: unknown) => {
        const { code, message } = reasonOf(e, 'E_RUNTIME_PROTOCOL');
        this.#o.audit({ action: 'protocol_error', user: site, msg: `${code}: ${message}`.slice(0, 2000) });
        ch.close();
      });
    });
    ch.onClose(() => {
      if (this.registry.remove(site, ch)) this.#gone(site, `site ${site} disconnected from relay ${this.#o.kit.participant.name}`);
    });
  }

  async #onSite(ch: PeerChannel, header: unknown, payload: Uint8Array): Promise<void> {
    const msg = parseMessage(header);
    const site = ch.peer.name;
    if (msg.t === 'register') {
      const old = this.registry.register(site, ch.peer.org, ch, msg.resources);
      if (old !== undefined && old.channel !== ch) this.#gone(site, `site ${site} reconnected`);
      this.#o.audit({ action: 'client_registered', user: site, msg: `site ${site} (${ch.peer.org}) registered with relay ${this.#o.kit.participant.name}`, data: { resources: msg.resources } });
      // The welcome carries the relay's newest CRL, as the server's does.
      const crl = this.#o.crl?.();
      await ch.send(outgoing({ t: 'welcome' }), crl === undefined ? undefined : new TextEncoder().encode(crl));
      this.onChange(site, true);
      // A site that comes (back) is offered the jobs running below this relay.
      for (const job of this.#jobs.values()) if (this.#candidates(job).includes(site)) void this.#deployer.deploy(job, site);
      return;
    }
    if (msg.t === 'bye') return ch.close();
    if (this.registry.get(site)?.channel !== ch) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `site ${site} sent '${msg.t}' before registering`);
    this.registry.seen(site, ch);
    switch (msg.t) {
      case 'heartbeat':
      case 'anchor':
        return;
      case 'relay_sites':
        // A chained aggregating relay's sites: reported up with this relay's own (checked as the server does).
        this.#view.report(site, msg.sites);
        this.onChange(site, true);
        return;
      case 'deploy_reply':
        this.#deployer.reply(site, msg);
        return;
      case 'result':
        if (!this.#tasks.result(site, msg, payload)) this.#o.audit({ action: 'late_result_ignored', user: site, job: msg.job, msg: `result of ${site} for round ${msg.round} has no open task at the relay`, data: { round: msg.round, site } });
        return;
      case 'leave': {
        const job = this.#jobs.get(msg.job);
        job?.deployed.delete(site);
        job?.refused.set(site, msg.reason);
        this.#tasks.failSiteJob(site, msg.job, new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `${site} left the job: ${msg.reason.code}`));
        return;
      }
      default:
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `a site may not send '${msg.t}' to a relay`);
    }
  }

  #gone(site: string, why: string): void {
    this.#o.audit({ action: 'client_lost', user: site, msg: why });
    const e = new FlareRuntimeError('E_RUNTIME_DISCONNECTED', why);
    for (const j of this.#jobs.values()) j.deployed.delete(site);
    this.#tasks.failSite(site, e);
    this.#deployer.failSite(site, e);
    this.onChange(site, false);
  }

  /** Stops listening, fails what is in flight and closes every site's connection. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    const stop = new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'relay shutting down');
    for (const j of this.#jobs.values()) j.abort.abort(stop);
    this.#tasks.failAll(stop);
    for (const n of this.registry.names()) this.registry.get(n)?.channel.close();
    await this.#endpoint.close();
  }
}

/** The local steps an update says it took (FLARE's NUM_STEPS_CURRENT_ROUND; 1 when it says none). */
export function stepsOf(update: FLModel): number {
  const n = Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1);
  return Number.isFinite(n) && n > 0 ? n : 1;
}

