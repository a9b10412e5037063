import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { FedAvgAggregator } from '@flare/aggregator';
import {
  FlareError,
  FlareRuntimeError,
  HeError,
  decodeModel,
  encodeModel,
  silentLogger,
  type Aggregator,
  type AuditHook,
  type FLModel,
  type JsonValue,
  type Logger,
} from '@flare/core';
import type { HeContext } from '@flare/filters-he';
import { AttestationGate, type AttestationOptions, type AttestationOutcome } from './attestation.js';
import { auditor } from './audit-util.js';
import type { ChannelServer, PeerChannel } from './channel.js';
import { EncryptionAwareAggregator } from './encryption-aware-aggregator.js';
import { ClientRegistry } from './client-registry.js';
import { EventBus, type PeerIdentity } from './event-bus.js';
import { parseJobDefinition, type JobDefinition } from './job-definition.js';
import { JobStore, type JobRecord, type RoundRecord } from './job-store.js';
import { outgoing, parseMessage, type Message } from './messages.js';
import { runScatterGather, type TaskOutcome } from './scatter-gather.js';

/** A person's identity for authorization (role may be empty for non-admins). */
export interface Principal {
  readonly name: string;
  readonly org: string;
  readonly role: string;
}

/** Decides whether `user` may exercise `right` (FLARE right names: submit_job, list_jobs, abort_job, ...). */
export type Authorizer = (request: { readonly user: Principal; readonly right: string; readonly submitter?: Principal }) => boolean | Promise<boolean>;

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
  /** Makes the aggregator for a job (default: @flare/aggregator's streaming FedAvg of weight differences). */
  readonly aggregator?: (definition: JobDefinition) => Aggregator;
  /**
   * The server's HE context (`loadHeContextFromKit(serverKit, 'server')`: parameters and key-set id, no secret
   * key; one holding a secret key is refused at start). Rounds whose updates sites encrypted with `he-encrypt`
   * are then aggregated with an HeAggregator on it, and the global model stays encrypted. Without it,
   * encrypted updates are refused (E_RUNTIME_HE_UNAVAILABLE).
   */
  readonly he?: HeContext;
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
  /** A site silent this long is dropped (default 30 s; sites heartbeat every 5 s). */
  readonly heartbeatTimeoutMs?: number;
  /** How long a job waits for every site it names before deploying to those present (default 20 s). */
  readonly deployWaitMs?: number;
  /** How long a site may take to answer a deploy request (default 60 s). */
  readonly deployTimeoutMs?: number;
  /** Called after each completed round (e.g. for a progress display). */
  readonly onRound?: (job: string, record: RoundRecord) => void;
}

interface PendingTask {
  readonly site: string;
  readonly sent: number;
  resolve(o: TaskOutcome): void;
  reject(e: unknown): void;
}

interface ActiveJob {
  readonly id: string;
  readonly definition: JobDefinition;
  /** The definition exactly as submitted: forwarded to sites, which re-validate it themselves. */
  readonly raw: JsonValue;
  /** The job's own files (BYOC), forwarded so each site verifies the submitter's signature itself. */
  readonly files: ReadonlyMap<string, Uint8Array>;
  readonly submitter: Principal;
  readonly deployed: Set<string>;
  readonly refused: Set<string>;
  readonly deploying: Set<string>;
  readonly abort: AbortController;
  aborted: boolean;
}

const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

function errorOf(e: unknown): { code: string; message: string } {
  if (e instanceof FlareError) return { code: e.code, message: e.message };
  return { code: 'E_RUNTIME_TASK_FAILED', message: e instanceof Error ? e.message.slice(0, 500) : String(e) };
}

/**
 * The federation server: accepts authenticated sites and admins, keeps the client registry with liveness,
 * stores jobs on disk, schedules and deploys them (each site re-checks its own policy), runs the
 * scatter-and-gather FedAvg workflow with a checkpoint per round, and answers the admin API. A restarted
 * server resumes every RUNNING job from its last checkpoint once its sites reconnect.
 *
 * @example
 * ```ts
 * const server = await ServerEngine.start({ name: 'server', org: 'nvidia', workspace, listener, authorize,
 *   aggregator: () => new FedAvg(), audit: (e) => log.append(e) });
 * ```
 */
export class ServerEngine {
  readonly store: JobStore;
  readonly registry: ClientRegistry;
  readonly #o: ServerEngineOptions;
  readonly #log: Logger;
  readonly #audit: ReturnType<typeof auditor>;
  readonly #events: EventBus;
  readonly #active = new Map<string, ActiveJob>();
  readonly #tasks = new Map<string, PendingTask>();
  readonly #deploys = new Map<string, { site: string; resolve(m: Extract<Message, { t: 'deploy_reply' }>): void; reject(e: unknown): void }>();
  readonly #waitingSince = new Map<string, number>();
  readonly #finished = new Set<Promise<void>>();
  readonly #gate: AttestationGate;
  /** Periodic attestation timers, per registered site. */
  readonly #rechecks = new Map<string, NodeJS.Timeout>();
  /** Sites refused by attestation (and why), so the scheduler does not wait for them. */
  readonly #attestRefused = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(o: ServerEngineOptions, store: JobStore) {
    this.#o = o;
    this.store = store;
    this.#log = o.logger ?? silentLogger;
    this.#audit = auditor(o.audit);
    this.#events = o.events ?? new EventBus();
    this.registry = new ClientRegistry({ timeoutMs: o.heartbeatTimeoutMs ?? 30_000 });
    this.#gate = new AttestationGate(o.attestation, o.name, this.#audit);
  }

  /** Opens the job store, starts accepting channels and the scheduler; RUNNING jobs resume as sites return. */
  static async start(o: ServerEngineOptions): Promise<ServerEngine> {
    // The server must never be able to decrypt: a client context (secret key) here is a provisioning mistake.
    if (o.he?.hasSecretKey === true) throw new HeError('E_HE_SECRET_KEY_PRESENT', 'the server was given an HE context holding the secret key; start it with the server kit\'s server_context.seal');
    const engine = new ServerEngine(o, await JobStore.open(o.workspace));
    o.listener.onChannel((ch) => engine.#accept(ch));
    engine.#timer = setInterval(() => engine.#tick(), 1000);
    engine.#timer.unref();
    const resumable = (await engine.store.list()).filter((j) => j.status === 'RUNNING');
    for (const j of resumable) {
      engine.#audit({ action: 'job_resume_pending', job: j.id, msg: `job ${j.name} resumes after round ${j.rounds_done - 1} when its sites reconnect` });
    }
    engine.#audit({ action: 'server_started', msg: `server ${o.name} started`, data: { resumable: resumable.length, he: o.he !== undefined, attestation: engine.#gate.verifiesPeers ? [...(o.attestation?.policy?.require ?? [])] : [] } });
    return engine;
  }

  /** Stops scheduling, cancels running workflows (they stay RUNNING on disk, to resume) and closes the listener. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const t of this.#rechecks.values()) clearInterval(t);
    this.#rechecks.clear();
    for (const a of this.#active.values()) a.abort.abort(new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'server shutting down'));
    await Promise.allSettled([...this.#finished]);
    for (const n of this.registry.names()) this.registry.get(n)?.channel.close();
    await this.#o.listener.close();
  }

  /** Resolves when the job reaches FINISHED, FAILED or ABORTED (polls the store; bounded by `timeoutMs`). */
  async waitForJob(id: string, timeoutMs: number): Promise<JobRecord> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.store.get(id);
      if (r.status === 'FINISHED' || r.status === 'FAILED' || r.status === 'ABORTED') return r;
      if (Date.now() > end) throw new FlareRuntimeError('E_RUNTIME_TIMEOUT', `job ${id} still ${r.status} after ${timeoutMs} ms`);
      await new Promise((r2) => setTimeout(r2, 100));
    }
  }

  #accept(ch: PeerChannel): void {
    if (this.#closed) return ch.close();
    const peer = ch.peer;
    ch.onMessage((h, payload) => {
      let msg: Message;
      try {
        msg = parseMessage(h);
      } catch (e) {
        this.#protocolError(ch, e);
        return;
      }
      const work = peer.kind === 'admin' ? this.#onAdmin(ch, msg, payload) : peer.kind === 'client' ? this.#onClient(ch, msg, payload) : Promise.reject(new FlareRuntimeError('E_RUNTIME_PROTOCOL', `a ${peer.kind} may not connect here`));
      work.catch((e: unknown) => this.#protocolError(ch, e));
    });
    ch.onClose(() => {
      this.#gate.forget(ch);
      if (peer.kind !== 'client' || !this.registry.remove(peer.name, ch)) return;
      clearInterval(this.#rechecks.get(peer.name));
      this.#rechecks.delete(peer.name);
      this.#audit({ action: 'client_lost', user: peer.name, msg: `site ${peer.name} disconnected` });
      this.#log.warn('site disconnected', { site: peer.name });
      this.#failTasksOf(peer.name, new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `site ${peer.name} disconnected`));
    });
  }

  #protocolError(ch: PeerChannel, e: unknown): void {
    const { code, message } = errorOf(e);
    this.#audit({ action: 'protocol_error', user: ch.peer.name, msg: `${code}: ${message}` });
    this.#log.warn('closing a peer after a protocol error', { peer: ch.peer.name, code });
    ch.close();
  }

  #failTasksOf(site: string, e: unknown): void {
    for (const [id, t] of this.#tasks) {
      if (t.site !== site) continue;
      this.#tasks.delete(id);
      t.reject(e);
    }
    for (const [id, d] of this.#deploys) {
      if (d.site !== site) continue;
      this.#deploys.delete(id);
      d.reject(e);
    }
  }

  /**
   * Refuses a site whose attestation failed: audits why, tells the site (bye with the code), closes its
   * connection (its tasks fail at once) and remembers it so the scheduler does not wait for it.
   */
  async #refuseAttestation(ch: PeerChannel, outcome: AttestationOutcome, when: string): Promise<void> {
    const site = ch.peer.name;
    const code = outcome.code ?? 'E_ATTEST_POLICY';
    this.#audit({ action: 'attestation_refused', user: site, msg: `${site} refused ${when}: ${code}: ${outcome.detail}`, data: { site, purpose: outcome.purpose, code, check: outcome.check ?? null } });
    this.#log.warn('site refused: attestation failed', { site, when, code, check: outcome.check, reason: outcome.detail });
    this.#attestRefused.set(site, `${code}: ${outcome.detail}`.slice(0, 2000));
    clearInterval(this.#rechecks.get(site));
    this.#rechecks.delete(site);
    await ch.send(outgoing({ t: 'bye', reason: { code, message: `the server refused ${site}'s attestation evidence ${when}: ${outcome.detail}`.slice(0, 2000) } })).catch(() => undefined);
    ch.close();
  }

  #attestationVerified(ch: PeerChannel, outcome: AttestationOutcome): void {
    this.#audit({ action: 'attestation_verified', user: ch.peer.name, msg: outcome.detail, data: { site: ch.peer.name, purpose: outcome.purpose, types: [...outcome.types] } });
  }

  /** Re-checks a registered site's evidence every interval; a failure drops it. */
  #scheduleRechecks(site: string, ch: PeerChannel): void {
    clearInterval(this.#rechecks.get(site));
    this.#rechecks.delete(site);
    const every = this.#gate.intervalMs;
    if (every <= 0) return;
    let running = false;
    const timer = setInterval(() => {
      if (running || this.#closed || this.registry.get(site)?.channel !== ch) return;
      running = true;
      void this.#gate
        .check(ch, 'periodic')
        .then(async (v) => (v.ok ? this.#attestationVerified(ch, v) : this.#refuseAttestation(ch, v, 'at a periodic check')))
        .finally(() => {
          running = false;
        });
    }, every);
    timer.unref();
    this.#rechecks.set(site, timer);
  }

  async #onClient(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    const site = ch.peer.name;
    // Attestation runs before registration too (a site checks the server before it registers).
    if (await this.#gate.handle(ch, msg, payload)) return;
    if (msg.t === 'bye') {
      this.#audit({ action: 'client_left', user: site, msg: `site ${site} left: ${msg.reason?.code ?? 'no reason'}: ${msg.reason?.message ?? ''}`.slice(0, 2000), data: { code: msg.reason?.code ?? null } });
      this.#log.warn('site left', { site, code: msg.reason?.code, reason: msg.reason?.message });
      ch.close();
      return;
    }
    if (msg.t !== 'register' && this.registry.get(site)?.channel !== ch) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `site ${site} sent '${msg.t}' before registering`);
    this.registry.seen(site, ch);
    switch (msg.t) {
      case 'register': {
        await this.#events.emit('before-register', { peer: ch.peer, resources: msg.resources });
        if (this.#gate.verifiesPeers) {
          const v = await this.#gate.check(ch, 'login');
          if (!v.ok) return this.#refuseAttestation(ch, v, 'at login');
          this.#attestationVerified(ch, v);
          this.#attestRefused.delete(site);
        }
        this.registry.register(site, ch.peer.org, ch, msg.resources);
        this.#audit({ action: 'client_registered', user: site, msg: `site ${site} (${ch.peer.org}) registered`, data: { resources: msg.resources } });
        this.#log.info('site registered', { site });
        await ch.send(outgoing({ t: 'welcome' }));
        this.#scheduleRechecks(site, ch);
        for (const a of this.#active.values()) if (this.#names(a.definition).includes(site)) void this.#deployTo(a, site);
        this.#tick();
        return;
      }
      case 'heartbeat':
        return;
      case 'deploy_reply': {
        const d = this.#deploys.get(msg.id);
        if (d === undefined || d.site !== site) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `unexpected deploy reply from ${site}`);
        this.#deploys.delete(msg.id);
        d.resolve(msg);
        return;
      }
      case 'result': {
        const t = this.#tasks.get(msg.task);
        if (t === undefined || t.site !== site) {
          // A result for a task we no longer wait for (its round closed, or the server restarted).
          this.#audit({ action: 'late_result_ignored', user: site, job: msg.job, ref: msg.ref, msg: `result of ${site} for round ${msg.round} has no open task`, data: { round: msg.round } });
          return;
        }
        this.#tasks.delete(msg.task);
        const bytes = t.sent + payload.byteLength;
        if (!msg.ok) {
          const err = new FlareRuntimeError('E_RUNTIME_TASK_FAILED', `${site}: ${msg.error?.code ?? 'unknown'}: ${msg.error?.message ?? ''}`);
          Object.defineProperty(err, 'siteCode', { value: msg.error?.code });
          t.reject(err);
          return;
        }
        let model: FLModel | undefined;
        if (msg.kind === 'train') {
          try {
            model = decodeModel(payload);
          } catch (e) {
            t.reject(e);
            return;
          }
        }
        t.resolve({ ...(model === undefined ? {} : { model }), metrics: msg.metrics, ...(msg.ref === undefined ? {} : { ref: msg.ref }), bytes });
        return;
      }
      default:
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `a site may not send '${msg.t}'`);
    }
  }

  #principal(p: PeerIdentity): Principal {
    return { name: p.name, org: p.org, role: p.role ?? '' };
  }

  async #require(user: Principal, right: string, submitter?: Principal): Promise<void> {
    const ok = await this.#o.authorize(submitter === undefined ? { user, right } : { user, right, submitter });
    if (!ok) {
      this.#audit({ action: 'admin_refused', user: user.name, msg: `user '${user.name}' is not authorized for '${right}'` });
      throw new FlareRuntimeError('E_RUNTIME_NOT_AUTHORIZED', `user '${user.name}' is not authorized for '${right}'`);
    }
  }

  async #onAdmin(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    if (msg.t !== 'admin') throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `an admin may not send '${msg.t}'`);
    const user = this.#principal(ch.peer);
    let data: JsonValue = null;
    let out: Uint8Array | undefined;
    try {
      switch (msg.cmd) {
        case 'submit': {
          await this.#require(user, 'submit_job');
          const definition = parseJobDefinition(msg.definition);
          if (definition.byoc !== undefined) await this.#require(user, 'byoc');
          const files = new Map(Object.entries(msg.files ?? {}).map(([k, v]) => [k, b64(v)] as const));
          const rec = await this.store.create({ definition: msg.definition, submitter: user, initialModel: payload, files });
          this.#audit({ action: 'job_submitted', user: user.name, job: rec.id, msg: `job ${rec.name} submitted`, data: { rounds: definition.rounds, sites: definition.deploy } });
          this.#log.info('job submitted', { job: rec.id, name: rec.name, by: user.name });
          this.#tick();
          data = { id: rec.id };
          break;
        }
        case 'list': {
          await this.#require(user, 'list_jobs');
          data = (await this.store.list()).map((j) => ({ id: j.id, name: j.name, status: j.status, submitter: j.submitter.name, rounds_done: j.rounds_done }));
          break;
        }
        case 'status': {
          const rec = await this.store.get(msg.job ?? '');
          await this.#require(user, 'get_job_meta', rec.submitter as Principal);
          data = rec as unknown as JsonValue;
          break;
        }
        case 'abort': {
          const rec = await this.store.get(msg.job ?? '');
          await this.#require(user, 'abort_job', { ...rec.submitter, role: rec.submitter.role ?? '' });
          if (rec.status !== 'SUBMITTED' && rec.status !== 'RUNNING') throw new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${rec.id} is ${rec.status}`);
          const ref = this.#audit({ action: 'job_abort', user: user.name, job: rec.id, msg: `job ${rec.name} aborted by ${user.name}` });
          const a = this.#active.get(rec.id);
          if (a !== undefined) {
            a.aborted = true;
            a.abort.abort(new FlareRuntimeError('E_RUNTIME_ABORTED', `job ${rec.id} aborted by ${user.name}`));
            for (const site of a.deployed) void this.registry.get(site)?.channel.send(outgoing({ t: 'abort', job: rec.id, by: user.role === '' ? { name: user.name, org: user.org } : user, ...(ref === undefined ? {} : { ref }) })).catch(() => undefined);
          }
          await this.store.update(rec.id, (r) => {
            r.status = 'ABORTED';
            r.ended_at = new Date().toISOString();
            r.error = { code: 'E_RUNTIME_ABORTED', message: `aborted by ${user.name}` };
          });
          data = { id: rec.id, status: 'ABORTED' };
          break;
        }
        case 'download': {
          const rec = await this.store.get(msg.job ?? '');
          await this.#require(user, 'download_job', { ...rec.submitter, role: rec.submitter.role ?? '' });
          out = await this.store.result(rec.id);
          this.#audit({ action: 'job_downloaded', user: user.name, job: rec.id, msg: `results of ${rec.name} downloaded by ${user.name}` });
          data = { id: rec.id, bytes: out.byteLength };
          break;
        }
        case 'audit': {
          await this.#require(user, 'tail');
          data = this.#o.auditTail === undefined ? [] : await this.#o.auditTail(msg.lines ?? 50);
          break;
        }
      }
      await ch.send(outgoing({ t: 'reply', id: msg.id, ok: true, data }), out);
    } catch (e) {
      const error = errorOf(e);
      await ch.send(outgoing({ t: 'reply', id: msg.id, ok: false, error }));
    }
  }

  #names(def: JobDefinition): string[] {
    return def.deploy.includes('@ALL') ? this.registry.names() : def.deploy.filter((s) => s !== '@ALL');
  }

  #fits(site: string, def: JobDefinition): boolean {
    const r = this.registry.get(site)?.resources ?? {};
    const gpus = r['num_of_gpus'];
    const mem = r['mem_per_gpu_in_GiB'];
    if (def.resources.num_of_gpus > 0 && (gpus === undefined || gpus < def.resources.num_of_gpus)) return false;
    if (def.resources.mem_per_gpu_in_GiB > 0 && (mem === undefined || mem < def.resources.mem_per_gpu_in_GiB)) return false;
    return true;
  }

  // The scheduler: start every job whose sites are present (all named ones, or min_clients after the wait).
  #tick(): void {
    if (this.#closed) return;
    for (const n of this.registry.sweep()) {
      this.#audit({ action: 'client_lost', user: n, msg: `site ${n} missed its heartbeats and was dropped` });
      this.#failTasksOf(n, new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `site ${n} missed its heartbeats`));
    }
    void this.store.list().then((jobs) => {
      for (const j of jobs) {
        if ((j.status !== 'SUBMITTED' && j.status !== 'RUNNING') || this.#active.has(j.id) || this.#closed) continue;
        void this.#maybeStart(j).catch((e: unknown) => this.#log.error('scheduler error', { job: j.id, error: errorOf(e).message }));
      }
    });
  }

  async #maybeStart(j: JobRecord): Promise<void> {
    const def = await this.store.definition(j.id);
    if (this.#active.has(j.id)) return;
    const named = this.#names(def);
    const present = named.filter((s) => this.registry.get(s) !== undefined && this.#fits(s, def));
    const since = this.#waitingSince.get(j.id) ?? Date.now();
    this.#waitingSince.set(j.id, since);
    const waited = Date.now() - since >= (this.#o.deployWaitMs ?? 20_000);
    // A site refused by attestation will not come back by waiting: do not wait for it.
    const expected = named.filter((s) => this.registry.get(s) !== undefined || !this.#attestRefused.has(s)).length;
    const ready = named.length > 0 && (present.length === named.length || (present.length === expected && present.length >= def.min_clients) || (waited && present.length >= def.min_clients));
    if (!ready) return;
    this.#waitingSince.delete(j.id);
    const raw = await this.store.rawDefinition(j.id);
    const files = await this.store.customFiles(j.id);
    if (this.#active.has(j.id)) return;
    const abort = new AbortController();
    // One listener per task in flight plus the round timer: more than Node's default warning threshold of 10.
    setMaxListeners(0, abort.signal);
    const active: ActiveJob = { id: j.id, definition: def, raw, files, submitter: { ...j.submitter, role: j.submitter.role ?? '' }, deployed: new Set(), refused: new Set(), deploying: new Set(), abort, aborted: false };
    this.#active.set(j.id, active);
    const run = this.#run(active, j, present).finally(() => {
      this.#active.delete(j.id);
      this.#finished.delete(run);
    });
    this.#finished.add(run);
  }

  async #deployTo(a: ActiveJob, site: string): Promise<boolean> {
    if (a.deployed.has(site) || a.refused.has(site) || a.deploying.has(site)) return a.deployed.has(site);
    const client = this.registry.get(site);
    if (client === undefined) return false;
    a.deploying.add(site);
    try {
      await this.#events.emit('before-deploy', { site, job: a.id, definition: a.definition, submitter: { ...a.submitter, kind: 'admin' } });
      if (this.#gate.verifiesPeers) {
        // Fresh evidence before every deploy: the platform may have changed since login.
        const v = await this.#gate.check(client.channel, `deploy:${a.id}`);
        if (!v.ok) {
          a.refused.add(site);
          await this.store.update(a.id, (r) => {
            r.refused[site] = `${v.code ?? 'E_ATTEST_POLICY'}: ${v.detail}`.slice(0, 2000);
          });
          await this.#refuseAttestation(client.channel, v, `before deploying job ${a.id}`);
          return false;
        }
        this.#attestationVerified(client.channel, v);
      }
      const id = randomUUID();
      const ref = this.#audit({ action: 'deploy_sent', job: a.id, user: a.submitter.name, msg: `job deployed to ${site}`, data: { site } });
      const reply = await new Promise<Extract<Message, { t: 'deploy_reply' }>>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#deploys.delete(id);
          reject(new FlareRuntimeError('E_RUNTIME_TIMEOUT', `${site} did not answer the deploy request`));
        }, this.#o.deployTimeoutMs ?? 60_000);
        this.#deploys.set(id, {
          site,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        const files = a.definition.byoc === undefined ? undefined : Object.fromEntries([...a.files].map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
        client.channel
          .send(outgoing({ t: 'deploy', id, job: a.id, definition: a.raw, ...(files === undefined ? {} : { files }), submitter: a.submitter.role === '' ? { name: a.submitter.name, org: a.submitter.org } : a.submitter, ...(ref === undefined ? {} : { ref }) }))
          .catch(reject);
      });
      if (reply.ok) {
        a.deployed.add(site);
        this.#audit({ action: 'deploy_accepted', job: a.id, ref: reply.ref, msg: `${site} accepted the job`, data: { site } });
        await this.store.update(a.id, (r) => {
          if (!r.sites.includes(site)) r.sites.push(site);
          delete r.refused[site];
        });
        return true;
      }
      a.refused.add(site);
      const why = `${reply.error?.code ?? 'refused'}: ${reply.error?.message ?? ''}`;
      this.#audit({ action: 'deploy_refused', job: a.id, ref: reply.ref, msg: `${site} refused the job: ${why}`, data: { site, code: reply.error?.code ?? null } });
      this.#log.warn('site refused the job', { job: a.id, site, code: reply.error?.code });
      await this.store.update(a.id, (r) => {
        r.refused[site] = why.slice(0, 2000);
      });
      return false;
    } catch (e) {
      this.#audit({ action: 'deploy_failed', job: a.id, msg: `deploying to ${site} failed: ${errorOf(e).code}`, data: { site } });
      return false;
    } finally {
      a.deploying.delete(site);
    }
  }

  async #run(a: ActiveJob, j: JobRecord, present: readonly string[]): Promise<void> {
    const def = a.definition;
    let aggregator: EncryptionAwareAggregator | undefined;
    try {
      await Promise.all(present.map((s) => this.#deployTo(a, s)));
      if (a.deployed.size < def.min_clients) {
        throw new FlareRuntimeError('E_RUNTIME_DEPLOY_REFUSED', `only ${a.deployed.size} sites accepted the job, min_clients is ${def.min_clients}`);
      }
      const gone = this.#names(def).filter((s) => !a.deployed.has(s) && this.#attestRefused.has(s));
      if (gone.length > 0) {
        await this.store.update(a.id, (r) => {
          for (const s of gone) r.refused[s] ??= this.#attestRefused.get(s)!;
        });
      }
      const cp = await this.store.loadCheckpoint(a.id);
      const start = cp === undefined ? 0 : cp.round + 1;
      const global = cp === undefined ? await this.store.initialModel(a.id) : cp.model;
      await this.store.update(a.id, (r) => {
        r.status = 'RUNNING';
      });
      this.#audit({ action: cp === undefined ? 'job_started' : 'job_resumed', job: a.id, user: j.submitter.name, msg: cp === undefined ? `job ${j.name} started` : `job ${j.name} resumed from the checkpoint of round ${cp.round}`, data: { start_round: start, sites: [...a.deployed] } });
      this.#log.info(cp === undefined ? 'job started' : 'job resumed', { job: a.id, startRound: start, sites: [...a.deployed] });
      aggregator = new EncryptionAwareAggregator(this.#o.aggregator?.(def) ?? new FedAvgAggregator({ kind: 'diff' }), this.#o.he);
      await runScatterGather({
        job: a.id,
        rounds: def.rounds,
        minClients: def.min_clients,
        roundTimeoutMs: def.round_timeout_s * 1000,
        retries: def.retries,
        global,
        startRound: start,
        aggregator,
        ...(this.#o.he === undefined ? {} : { he: this.#o.he }),
        comms: { sites: () => [...a.deployed].filter((s) => this.registry.get(s) !== undefined).sort(), sendTask: (site, task) => this.#sendTask(a, site, task) },
        checkpoint: async (round, model, record, previousMetrics) => {
          await this.store.saveCheckpoint(a.id, round, model);
          await this.store.update(a.id, (r) => {
            r.rounds_done = round + 1;
            const prev = r.history.find((h) => h.round === round - 1);
            if (prev !== undefined && Object.keys(previousMetrics).length > 0) prev.metrics = previousMetrics;
            r.history = r.history.filter((h) => h.round !== round);
            r.history.push(record);
          });
          this.#o.onRound?.(a.id, record);
        },
        finalMetrics: async (round, metrics) => {
          await this.store.update(a.id, (r) => {
            const h = r.history.find((x) => x.round === round);
            if (h !== undefined) h.metrics = metrics;
          });
        },
        audit: (e) => this.#audit(e),
        logger: this.#log,
        events: this.#events,
        signal: a.abort.signal,
      });
      await this.store.update(a.id, (r) => {
        r.status = 'FINISHED';
        r.ended_at = new Date().toISOString();
      });
      this.#audit({ action: 'job_finished', job: a.id, msg: `job ${j.name} finished ${def.rounds} rounds` });
      this.#log.info('job finished', { job: a.id });
      await this.#events.emit('after-job', { job: a.id, status: 'FINISHED' });
    } catch (e) {
      if (this.#closed && !a.aborted) return; // shutting down: stays RUNNING, resumes on restart
      if (a.aborted) {
        await this.#events.emit('after-job', { job: a.id, status: 'ABORTED' });
        return;
      }
      const error = errorOf(e);
      await this.store.update(a.id, (r) => {
        r.status = 'FAILED';
        r.ended_at = new Date().toISOString();
        r.error = error;
      });
      this.#audit({ action: 'job_failed', job: a.id, msg: `job ${j.name} failed: ${error.code}: ${error.message}` });
      this.#log.error('job failed', { job: a.id, ...error });
      await this.#events.emit('after-job', { job: a.id, status: 'FAILED' });
    } finally {
      aggregator?.dispose();
    }
  }

  async #sendTask(a: ActiveJob, site: string, task: { readonly round: number; readonly kind: 'train' | 'validate'; readonly model: FLModel; readonly ref: string | undefined }): Promise<TaskOutcome> {
    const client = this.registry.get(site);
    if (client === undefined) throw new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `site ${site} is not connected`);
    const id = randomUUID();
    const bytes = encodeModel(task.model);
    return new Promise<TaskOutcome>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.#tasks.delete(id)) reject(a.abort.signal.reason);
      };
      const settle = (): void => a.abort.signal.removeEventListener('abort', onAbort);
      this.#tasks.set(id, {
        site,
        sent: bytes.byteLength,
        resolve: (o) => {
          settle();
          resolve(o);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      });
      a.abort.signal.addEventListener('abort', onAbort, { once: true });
      client.channel
        .send(outgoing({ t: 'task', job: a.id, round: task.round, task: id, kind: task.kind, ...(task.ref === undefined ? {} : { ref: task.ref }) }), bytes)
        .catch((e: unknown) => {
          if (this.#tasks.delete(id)) reject(e);
        });
    });
  }
}

