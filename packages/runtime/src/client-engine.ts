import { createHash } from 'node:crypto';
import {
  AttestError,
  FlareError,
  FlareRuntimeError,
  META,
  decodeModel,
  encodeModel,
  isFlareErrorCode,
  silentLogger,
  type AuditEventInput,
  type AuditHook,
  type FilterContext,
  type FilterFactory,
  type FLModel,
  type Learner,
  type Logger,
} from '@flare/core';
import { AttestationGate, attestationError, type AttestationOptions, type AttestationOutcome } from './attestation.js';
import { auditor } from './audit-util.js';
import type { PeerChannel } from './channel.js';
import { EventBus } from './event-bus.js';
import { parseJobDefinition, type ComponentSpec, type JobDefinition } from './job-definition.js';
import { outgoing, parseMessage, type Message } from './messages.js';
import type { Principal } from './server-engine.js';
import type { BuiltFilter, LearnerFactory, SitePolicy } from './site-policy.js';

/** Options of {@link ClientEngine.start}. */
export interface ClientEngineOptions {
  /** This site's name and org (from its kit). */
  readonly site: { readonly name: string; readonly org: string };
  /** Opens an authenticated channel to the server (called again to reconnect). */
  readonly connect: () => Promise<PeerChannel>;
  readonly policy: SitePolicy;
  /** Learners this site can build, by registered name. */
  readonly learners: ReadonlyMap<string, LearnerFactory<unknown>>;
  /** Filters this site can build, by registered name (DP, exclude-vars, ...). */
  readonly filters: ReadonlyMap<string, FilterFactory<unknown>>;
  /** Folder private to this site (filter state such as DP budgets lives here). */
  readonly workspace: string;
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  readonly events?: EventBus;
  /** Heartbeat period (default 5 s). */
  readonly heartbeatMs?: number;
  /**
   * Verifies a BYOC job's signature (the submitter's certificate chains to this site's project root, names the
   * submitter, and its key signed exactly these files); throws to refuse. Without it this site refuses every
   * job that brings code (E_RUNTIME_BYOC_SIGNATURE). @flare/policy's `verifyByocSignature` implements it.
   */
  readonly verifyByoc?: (bundle: { readonly files: ReadonlyMap<string, Uint8Array>; readonly signature: string; readonly certificate: string }, submitter: Principal) => void;
  /** Reconnection after the server goes away: attempts and delay between them (default 120 x 500 ms). */
  readonly reconnect?: { readonly attempts: number; readonly delayMs: number };
  /**
   * Attestation of the server (and of this site, when the server asks): this site's policy for the server
   * (from its kit), its attesters, trust anchors, re-check interval. The server is checked at login, before
   * each job is accepted and periodically; a failure stops this site (no reconnect) with an
   * `attestation_refused` audit event, and `stopReason` says why.
   */
  readonly attestation?: AttestationOptions;
}

/** Filters that must run where encryption needs them, whatever order the policy lists them in. */
const DECRYPT_FIRST = 'he-decrypt';
const ENCRYPT_LAST = 'he-encrypt';

/** Errors that end the site instead of a reconnect: the server, the kit or attestation refused it. */
function isFinal(e: unknown): e is FlareError {
  return e instanceof FlareError && (/^E_(PKI|AUTH|ATTEST)_/.test(e.code) || e.code === 'E_RUNTIME_ATTESTATION_UNBOUND');
}

interface DeployedJob {
  readonly id: string;
  readonly definition: JobDefinition;
  readonly learner: Learner;
  readonly dataFilters: readonly BuiltFilter[];
  readonly resultFilters: readonly BuiltFilter[];
  readonly scope: string;
  /** Who submitted the job (as the server authenticated them), for site-level rights such as abort_job. */
  readonly submitter: Principal;
  readonly abort: AbortController;
  queue: Promise<void>;
}

function errorOf(e: unknown): { code: string; message: string } {
  if (e instanceof FlareError) return { code: e.code, message: e.message.slice(0, 1000) };
  if (e instanceof Error && e.name === 'AbortError') return { code: 'E_RUNTIME_ABORTED', message: 'task cancelled' };
  return { code: 'E_RUNTIME_TASK_FAILED', message: e instanceof Error ? e.message.slice(0, 1000) : String(e) };
}

/**
 * A site: connects to the server over an authenticated channel, registers with its resources, and
 * heartbeats. Before a job runs here the site decides for itself, in this order, auditing every refusal with
 * its reason: the definition is valid; event-bus plugins agree; the submitter has `submit_job` under this
 * site's authorization; BYOC needs the `byoc` right and the site's consent; every component is on the
 * allow-list and installed; the privacy scope exists; resources allow. Each task then runs the pipeline:
 * site scope data filters, job data filters, validate + train, site scope result filters, job result
 * filters; every step is an audit event whose `ref` is the server's event id for the task.
 */
export class ClientEngine {
  readonly #o: ClientEngineOptions;
  readonly #log: Logger;
  readonly #audit: ReturnType<typeof auditor>;
  readonly #events: EventBus;
  readonly #jobs = new Map<string, DeployedJob>();
  readonly #gate: AttestationGate;
  #channel: PeerChannel | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #recheck: NodeJS.Timeout | undefined;
  #stopReason: FlareError | undefined;
  #closed = false;
  #connected: Promise<void> | undefined;
  /** Resolves when the engine stops for good (closed, or the server could not be reached again). */
  readonly done: Promise<void>;
  #finish: () => void = () => undefined;

  private constructor(o: ClientEngineOptions) {
    this.#o = o;
    this.#log = o.logger ?? silentLogger;
    this.#audit = auditor(o.audit);
    this.#events = o.events ?? new EventBus();
    this.#gate = new AttestationGate(o.attestation, o.site.name, this.#audit);
    this.done = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  /** Connects (retrying within the reconnect bounds) and registers. */
  static async start(o: ClientEngineOptions): Promise<ClientEngine> {
    const engine = new ClientEngine(o);
    await engine.#connect();
    return engine;
  }

  /** Jobs deployed here now. */
  jobs(): string[] {
    return [...this.#jobs.keys()];
  }

  /** Why the site stopped by itself (an attestation refusal, either way), once `done` resolved for that reason. */
  get stopReason(): FlareError | undefined {
    return this.#stopReason;
  }

  /** Stops heartbeats, cancels tasks and closes the channel. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#recheck);
    for (const j of this.#jobs.values()) j.abort.abort();
    this.#channel?.close();
    this.#finish();
  }

  async #connect(): Promise<void> {
    const { attempts, delayMs } = this.#o.reconnect ?? { attempts: 120, delayMs: 500 };
    let last: unknown;
    for (let i = 0; i < attempts && !this.#closed; i++) {
      try {
        const ch = await this.#o.connect();
        await this.#attach(ch);
        return;
      } catch (e) {
        last = e;
        // A refusal by policy, a bad kit or failed attestation will not heal by retrying.
        if (isFinal(e)) throw e;
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
    throw last instanceof Error ? last : new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'could not reach the server');
  }

  /** The error a `bye` from the server carries: final (and audited) for an attestation refusal. */
  #byeError(reason: { code: string; message: string } | undefined): FlareError {
    const code = reason?.code ?? '';
    if (isFlareErrorCode(code) && (code.startsWith('E_ATTEST_') || code === 'E_RUNTIME_ATTESTATION_UNBOUND')) {
      const message = (reason?.message ?? 'the server refused this site').slice(0, 2000);
      this.#audit({ action: 'attestation_refused_by_peer', msg: `${code}: ${message}`, data: { code } });
      return code.startsWith('E_ATTEST_') ? new AttestError(code as ConstructorParameters<typeof AttestError>[0], message) : new FlareError(code, message);
    }
    return new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `server said bye: ${code}`);
  }

  /** This site refuses the server's attestation: audits why and returns the error to leave with. */
  #refuseServer(ch: PeerChannel, outcome: AttestationOutcome, when: string): FlareError {
    const code = outcome.code ?? 'E_ATTEST_POLICY';
    this.#audit({ action: 'attestation_refused', user: ch.peer.name, msg: `server ${ch.peer.name} refused ${when}: ${code}: ${outcome.detail}`, data: { peer: ch.peer.name, purpose: outcome.purpose, code, check: outcome.check ?? null } });
    this.#log.error('server refused: attestation failed', { server: ch.peer.name, when, code, check: outcome.check, reason: outcome.detail });
    return attestationError({ ...outcome, detail: `${this.#o.site.name} refused the server's attestation evidence ${when}: ${outcome.detail}` }, `server ${ch.peer.name}`);
  }

  /** Tells the server why this site leaves (bye with the code), so its audit log says so too. */
  async #sayBye(ch: PeerChannel, e: FlareError): Promise<void> {
    await ch.send(outgoing({ t: 'bye', reason: { code: e.code, message: e.message.slice(0, 2000) } })).catch(() => undefined);
  }

  #attestationVerified(ch: PeerChannel, outcome: AttestationOutcome): void {
    this.#audit({ action: 'attestation_verified', user: ch.peer.name, msg: outcome.detail, data: { peer: ch.peer.name, purpose: outcome.purpose, types: [...outcome.types] } });
  }

  /** Ends the site for good (no reconnect), remembering why. */
  #stopWith(e: FlareError): void {
    if (this.#closed) return;
    this.#stopReason = e;
    this.#audit({ action: 'site_stopped', msg: `${e.code}: ${e.message}`.slice(0, 2000), data: { code: e.code } });
    this.#log.error('site stopped', { code: e.code, reason: e.message });
    void this.close();
  }

  async #attach(ch: PeerChannel): Promise<void> {
    this.#channel = ch;
    let isWelcomed = false;
    const welcomed = new Promise<void>((resolve, reject) => {
      // The server may check this site's attestation before it welcomes it.
      const timer = setTimeout(() => reject(new FlareRuntimeError('E_RUNTIME_TIMEOUT', 'the server did not welcome this site')), 30_000 + this.#gate.checkTimeoutMs);
      ch.onMessage((h, payload) => {
        let msg: Message;
        try {
          msg = parseMessage(h);
        } catch (e) {
          this.#audit({ action: 'protocol_error', msg: errorOf(e).message });
          ch.close();
          return;
        }
        if (msg.t === 'welcome') {
          clearTimeout(timer);
          isWelcomed = true;
          resolve();
          return;
        }
        if (msg.t === 'bye') {
          clearTimeout(timer);
          const e = this.#byeError(msg.reason);
          if (!isWelcomed) reject(e);
          else if (isFinal(e)) this.#stopWith(e);
          return;
        }
        void this.#onMessage(ch, msg, payload).catch((e: unknown) => {
          this.#log.error('message handling failed', errorOf(e));
        });
      });
      ch.onClose(() => {
        clearTimeout(timer);
        this.#gate.forget(ch);
        reject(new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'the server closed the connection'));
        if (this.#channel === ch) this.#lost();
      });
    });
    // Observed below; a failure before that point must not surface as an unhandled rejection.
    welcomed.catch(() => undefined);
    try {
      if (this.#gate.verifiesPeers) {
        const v = await this.#gate.check(ch, 'login');
        if (!v.ok) {
          const e = this.#refuseServer(ch, v, 'at login');
          await this.#sayBye(ch, e);
          throw e;
        }
        this.#attestationVerified(ch, v);
      }
      await ch.send(outgoing({ t: 'register', resources: { ...this.#o.policy.report } }));
      await welcomed;
    } catch (e) {
      // Not the live channel any more: its close must not start a second reconnect loop.
      if (this.#channel === ch) this.#channel = undefined;
      ch.close();
      throw e;
    }
    this.#audit({ action: 'registered', msg: `site ${this.#o.site.name} registered with the server` });
    this.#log.info('registered with the server', { site: this.#o.site.name });
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => void ch.send(outgoing({ t: 'heartbeat' })).catch(() => undefined), this.#o.heartbeatMs ?? 5000);
    this.#heartbeat.unref();
    this.#scheduleRechecks(ch);
  }

  /** Re-checks the server's evidence every interval; a failure stops this site. */
  #scheduleRechecks(ch: PeerChannel): void {
    clearInterval(this.#recheck);
    const every = this.#gate.intervalMs;
    if (every <= 0) return;
    let running = false;
    this.#recheck = setInterval(() => {
      if (running || this.#closed || this.#channel !== ch) return;
      running = true;
      void this.#gate
        .check(ch, 'periodic')
        .then(async (v) => {
          if (v.ok) return this.#attestationVerified(ch, v);
          const e = this.#refuseServer(ch, v, 'at a periodic check');
          await this.#sayBye(ch, e);
          this.#stopWith(e);
        })
        .finally(() => {
          running = false;
        });
    }, every);
    this.#recheck.unref();
  }

  #lost(): void {
    clearInterval(this.#heartbeat);
    clearInterval(this.#recheck);
    if (this.#closed) return;
    this.#audit({ action: 'server_lost', msg: 'connection to the server lost; reconnecting' });
    this.#log.warn('connection to the server lost; reconnecting');
    if (this.#connected !== undefined) return;
    this.#connected = this.#connect()
      .catch((e: unknown) => {
        this.#log.error('could not reconnect to the server', errorOf(e));
        this.#audit({ action: 'server_unreachable', msg: `gave up reconnecting: ${errorOf(e).code}` });
        this.#finish();
      })
      .finally(() => {
        this.#connected = undefined;
      });
  }

  async #onMessage(ch: PeerChannel, msg: Message, payload: Uint8Array): Promise<void> {
    if (await this.#gate.handle(ch, msg, payload)) return;
    switch (msg.t) {
      case 'deploy': {
        const { stop, ...out } = await this.#deploy(ch, msg);
        await ch.send(outgoing({ t: 'deploy_reply', id: msg.id, job: msg.job, ...out }));
        if (stop !== undefined) {
          await this.#sayBye(ch, stop);
          this.#stopWith(stop);
        }
        return;
      }
      case 'task': {
        const job = this.#jobs.get(msg.job);
        if (job === undefined) {
          const ref = this.#audit({ action: 'task_refused', job: msg.job, ref: msg.ref, msg: 'task for a job not deployed here' });
          await ch.send(outgoing({ t: 'result', job: msg.job, round: msg.round, task: msg.task, kind: msg.kind, ok: false, ...(ref === undefined ? {} : { ref }), error: { code: 'E_RUNTIME_JOB_NOT_FOUND', message: 'job not deployed at this site' }, metrics: {} }));
          return;
        }
        // One task at a time per job: a learner is not re-entrant.
        job.queue = job.queue.then(() => this.#task(ch, job, msg, payload));
        return job.queue;
      }
      case 'abort': {
        const job = this.#jobs.get(msg.job);
        if (job === undefined) return;
        // A site-level action: this site re-checks the admin's abort_job right under its own policy.
        if (msg.by !== undefined) {
          const by: Principal = { name: msg.by.name, org: msg.by.org, role: msg.by.role ?? '' };
          const allowed = await this.#o.policy.authorize({ user: by, right: 'abort_job', submitter: job.submitter });
          if (!allowed) {
            this.#audit({ action: 'abort_refused', job: msg.job, ref: msg.ref, user: by.name, msg: `user '${by.name}' is not authorized for 'abort_job' at ${this.#o.site.name}`, data: { code: 'E_RUNTIME_NOT_AUTHORIZED' } });
            return;
          }
        }
        job.abort.abort(new FlareRuntimeError('E_RUNTIME_ABORTED', `job ${msg.job} aborted`));
        this.#jobs.delete(msg.job);
        this.#audit({ action: 'job_aborted', job: msg.job, ref: msg.ref, msg: 'the server aborted the job' });
        return;
      }
      default:
        throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `the server may not send '${msg.t}'`);
    }
  }

  #refuse(job: string, ref: string | undefined, e: unknown, submitter?: string): { ok: false; ref?: string; error: { code: string; message: string } } {
    const error = errorOf(e);
    const id = this.#audit({ action: 'deploy_refused', job, ref, user: submitter, msg: `${error.code}: ${error.message}`, data: { code: error.code } });
    this.#log.warn('job refused', { job, code: error.code, reason: error.message });
    return { ok: false, ...(id === undefined ? {} : { ref: id }), error };
  }

  async #deploy(ch: PeerChannel, msg: Extract<Message, { t: 'deploy' }>): Promise<{ ok: boolean; ref?: string; error?: { code: string; message: string }; stop?: FlareError }> {
    const site = this.#o.site.name;
    const policy = this.#o.policy;
    const submitter: Principal = { name: msg.submitter.name, org: msg.submitter.org, role: msg.submitter.role ?? '' };
    const recv = this.#audit({ action: 'deploy_received', job: msg.job, ref: msg.ref, user: submitter.name, msg: `deploy request for job ${msg.job} from ${submitter.name}` });
    try {
      if (this.#gate.verifiesPeers) {
        // Fresh evidence from the server before this site gives it a job's updates.
        const v = await this.#gate.check(ch, `deploy:${msg.job}`);
        if (!v.ok) {
          const stop = this.#refuseServer(ch, v, `before accepting job ${msg.job}`);
          return { ...this.#refuse(msg.job, recv, stop, submitter.name), stop };
        }
        this.#attestationVerified(ch, v);
      }
      const def = parseJobDefinition(msg.definition);
      await this.#events.emit('before-deploy', { site, job: msg.job, definition: def, submitter: { ...submitter, kind: 'admin' } });
      // The server cannot override a site: the submitter is re-checked here under this site's own policy.
      if (!(await policy.authorize({ user: submitter, right: 'submit_job' }))) {
        throw new FlareRuntimeError('E_RUNTIME_SUBMITTER_REFUSED', `user '${submitter.name}' is not authorized for 'submit_job' at ${site}`);
      }
      if (def.byoc !== undefined) {
        if (!(await policy.authorize({ user: submitter, right: 'byoc' }))) throw new FlareRuntimeError('E_RUNTIME_BYOC_REFUSED', `user '${submitter.name}' is not authorized for 'byoc' at ${site}`);
        if (!policy.byocConsent) throw new FlareRuntimeError('E_RUNTIME_BYOC_REFUSED', `${site} does not consent to jobs that bring their own code`);
        const files = new Map(Object.entries(msg.files ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))] as const));
        const declared = Object.entries(def.byoc.files);
        const digestsMatch = declared.length === files.size && declared.every(([k, d]) => files.has(k) && createHash('sha256').update(files.get(k)!).digest('hex') === d);
        if (!digestsMatch) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', 'the custom files do not match the digests in byoc.files');
        if (this.#o.verifyByoc === undefined || def.byoc.certificate === undefined) throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', `${site} cannot verify who signed the job's code`);
        try {
          this.#o.verifyByoc({ files, signature: def.byoc.signature, certificate: def.byoc.certificate }, submitter);
        } catch (e) {
          throw new FlareRuntimeError('E_RUNTIME_BYOC_SIGNATURE', `the job's code is not signed by its submitter: ${e instanceof Error ? e.message.slice(0, 300) : 'invalid'}`, { cause: e });
        }
        this.#audit({ action: 'byoc_verified', job: msg.job, ref: recv, user: submitter.name, msg: `${files.size} custom files signed by ${submitter.name}` });
      }
      const scope = policy.scope(def.scope);
      if (scope === undefined) throw new FlareRuntimeError('E_RUNTIME_SCOPE_UNKNOWN', `${site} has no privacy scope '${def.scope ?? '(default)'}'`);
      const named: Array<[ComponentSpec, 'learner' | 'data-filter' | 'result-filter']> = [
        [def.learner, 'learner'],
        ...def.task_data_filters.map((c) => [c, 'data-filter'] as [ComponentSpec, 'data-filter']),
        ...def.task_result_filters.map((c) => [c, 'result-filter'] as [ComponentSpec, 'result-filter']),
      ];
      for (const [c] of named) {
        if (!policy.admitsComponent(c.name)) throw new FlareRuntimeError('E_RUNTIME_COMPONENT_FORBIDDEN', `component '${c.name}' is not on ${site}'s allow-list`);
      }
      const running = [...this.#jobs.keys()].filter((j) => j !== msg.job).length;
      const short = policy.checkResources(def.resources, running);
      if (short !== undefined) throw new FlareRuntimeError('E_RUNTIME_RESOURCES', short);
      const env = { site, workspace: this.#o.workspace, job: msg.job, logger: this.#log };
      const build = async (c: ComponentSpec, role: 'data-filter' | 'result-filter'): Promise<BuiltFilter> => {
        await this.#events.emit('before-build-component', { site, job: msg.job, component: c.name, role });
        const f = this.#o.filters.get(c.name);
        if (f === undefined) throw new FlareRuntimeError('E_RUNTIME_COMPONENT_UNKNOWN', `${site} has no filter '${c.name}'`);
        const args = f.args.safeParse(c.args);
        if (!args.success) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `arguments of filter '${c.name}': ${args.error.issues[0]?.message ?? 'invalid'}`);
        return { name: c.name, filter: f.create(args.data, env) };
      };
      const dataChain = [...(await Promise.all(scope.taskDataFilters.map((c) => build(c, 'data-filter')))), ...(await Promise.all(def.task_data_filters.map((c) => build(c, 'data-filter'))))];
      const resultChain = [...(await Promise.all(scope.taskResultFilters.map((c) => build(c, 'result-filter')))), ...(await Promise.all(def.task_result_filters.map((c) => build(c, 'result-filter'))))];
      // HE: decryption is the first thing done to a model that arrives and encryption the last before one
      // leaves, wherever the site's scope and the job list them: a job filter after he-encrypt would work on
      // ciphertext bytes, and one before he-decrypt on an unreadable model.
      const dataFilters = [...dataChain.filter((f) => f.name === DECRYPT_FIRST), ...dataChain.filter((f) => f.name !== DECRYPT_FIRST)];
      const resultFilters = [...resultChain.filter((f) => f.name !== ENCRYPT_LAST), ...resultChain.filter((f) => f.name === ENCRYPT_LAST)];
      await this.#events.emit('before-build-component', { site, job: msg.job, component: def.learner.name, role: 'learner' });
      const lf = this.#o.learners.get(def.learner.name);
      if (lf === undefined) throw new FlareRuntimeError('E_RUNTIME_COMPONENT_UNKNOWN', `${site} has no learner '${def.learner.name}'`);
      const largs = lf.args.safeParse(def.learner.args);
      if (!largs.success) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `arguments of learner '${def.learner.name}': ${largs.error.issues[0]?.message ?? 'invalid'}`);
      const learner = await lf.create(largs.data, env);
      this.#jobs.get(msg.job)?.abort.abort();
      this.#jobs.set(msg.job, { id: msg.job, definition: def, learner, dataFilters, resultFilters, scope: scope.name, submitter, abort: new AbortController(), queue: Promise.resolve() });
      const ref = this.#audit({
        action: 'deploy_accepted',
        job: msg.job,
        ref: recv,
        user: submitter.name,
        scope: scope.name,
        msg: `job ${def.name} accepted: scope ${scope.name}, learner ${def.learner.name}, ${dataFilters.length} data and ${resultFilters.length} result filters`,
        data: { data_filters: dataFilters.map((f) => f.name), result_filters: resultFilters.map((f) => f.name) },
      });
      this.#log.info('job deployed', { job: msg.job, scope: scope.name });
      return { ok: true, ...(ref === undefined ? {} : { ref }) };
    } catch (e) {
      return this.#refuse(msg.job, recv, e, submitter.name);
    }
  }

  async #applyFilters(filters: readonly BuiltFilter[], m: FLModel, ctx: FilterContext, direction: 'in' | 'out', ref: string | undefined, job: DeployedJob): Promise<FLModel> {
    let cur = m;
    for (const { name, filter } of filters) {
      ctx.signal?.throwIfAborted();
      cur = await filter.apply(cur, ctx);
      this.#audit({ action: 'filter_applied', job: job.id, ref, scope: job.scope, msg: `${direction === 'in' ? 'data' : 'result'} filter ${name} applied`, data: { filter: name, direction, round: ctx.round } });
    }
    return cur;
  }

  async #task(ch: PeerChannel, job: DeployedJob, msg: Extract<Message, { t: 'task' }>, payload: Uint8Array): Promise<void> {
    const site = this.#o.site.name;
    const recv = this.#audit({ action: 'task_received', job: job.id, ref: msg.ref, scope: job.scope, msg: `${msg.kind} task for round ${msg.round}`, data: { round: msg.round, kind: msg.kind } });
    const metrics: Record<string, number> = {};
    // Filters report what they did through the hook (e.g. epsilon spent); numbers are passed back with the result.
    const filterAudit: AuditHook = (e: AuditEventInput) => {
      for (const [k, v] of Object.entries(e.data ?? {})) if (typeof v === 'number' && /^(epsilon|delta|epsilon_spent|epsilon_total)/.test(k)) metrics[k] = v;
      // HE cost, for the server's round record (the poc's overhead report): time and upload size.
      const ms = e.data?.['ms'];
      if (e.action === 'he_encrypted' && typeof ms === 'number') {
        metrics['he_encrypt_ms'] = ms;
        if (typeof e.data?.['bytes'] === 'number') metrics['he_upload_bytes'] = e.data['bytes'];
      }
      if (e.action === 'he_decrypted' && typeof ms === 'number') metrics['he_decrypt_ms'] = ms;
      return this.#audit({ ...e, job: job.id, ref: e.ref ?? recv });
    };
    const ctx: FilterContext = { site, job: job.id, task: msg.kind, round: msg.round, peer: ch.peer.name, audit: filterAudit, signal: job.abort.signal };
    try {
      await this.#events.emit('before-task', { site, job: job.id, round: msg.round, ref: msg.ref ?? '' });
      let global = decodeModel(payload);
      global = await this.#applyFilters(job.dataFilters, global, ctx, 'in', recv, job);
      const lctx = { site, job: job.id, round: msg.round, signal: job.abort.signal };
      const v = await job.learner.validate(global, lctx);
      for (const [k, x] of Object.entries(v)) metrics[`val_${k}`] = x;
      let out: Uint8Array | undefined;
      if (msg.kind === 'train') {
        let update = await job.learner.train(global, lctx);
        this.#audit({ action: 'local_training_done', job: job.id, ref: recv, msg: `round ${msg.round}: ${String(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? '?')} local steps`, data: { round: msg.round, steps: Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 0) } });
        update = await this.#applyFilters(job.resultFilters, update, ctx, 'out', recv, job);
        out = encodeModel(update);
      }
      const ref = this.#audit({ action: 'result_sent', job: job.id, ref: msg.ref, scope: job.scope, msg: `${msg.kind} result for round ${msg.round}`, data: { round: msg.round, bytes: out?.byteLength ?? 0 } });
      await ch.send(outgoing({ t: 'result', job: job.id, round: msg.round, task: msg.task, kind: msg.kind, ok: true, metrics, ...(ref === undefined ? {} : { ref }) }), out);
      await this.#events.emit('after-task', { site, job: job.id, round: msg.round, ok: true });
    } catch (e) {
      const error = errorOf(e);
      const ref = this.#audit({ action: error.code.startsWith('E_DP_') ? 'privacy_refused' : 'task_failed', job: job.id, ref: recv, msg: `${error.code}: ${error.message}`, data: { round: msg.round, code: error.code } });
      this.#log.warn('task failed', { job: job.id, round: msg.round, code: error.code, reason: error.message });
      await ch.send(outgoing({ t: 'result', job: job.id, round: msg.round, task: msg.task, kind: msg.kind, ok: false, error, metrics, ...(ref === undefined ? {} : { ref }) })).catch(() => undefined);
      await this.#events.emit('after-task', { site, job: job.id, round: msg.round, ok: false, code: error.code }).catch(() => undefined);
    }
  }
}
