import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FlareRuntimeError, PolicyError, isFlareError, type Identity, type Logger } from '@flare/core';
import type { JobSigner } from '@flare/policy';
import type { LooseAuditEvent } from '../audit.js';
import type { Reason } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import { decodeJobBundle, type BundleLimits } from '../protocol/bundle.js';
import { parseMetaJson } from '../protocol/job-definition.js';
import { Pacer } from '../server/broadcast.js';
import type { SiteWorkflow } from '../workflows/workflow.js';
import { admit, buildChains } from './admission.js';
import { initialModelDigest } from './initial-model.js';
import type { SiteJobLedger } from './job-ledger.js';
import { authenticateSubmitter } from './oidc.js';
import type { FilterRegistry, LearnerEnv, LearnerFactory, SitePolicy } from './policy.js';
import type { SiteJob } from './task-runner.js';

/** What deploying and ending jobs needs from the site. */
export interface SiteJobsOptions {
  readonly site: { readonly name: string; readonly org: string };
  readonly workspace: string;
  readonly policy: SitePolicy;
  readonly learners: ReadonlyMap<string, LearnerFactory<unknown>>;
  readonly filters: FilterRegistry;
  readonly workflows: ReadonlyMap<string, SiteWorkflow>;
  readonly limits: BundleLimits;
  /** Keep each job's folder after the job (default: removed). */
  readonly keepJobWorkspaces: boolean;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly events: EventBus;
  /** The job's wall time ran out (its reservation was aborted): the site leaves it. */
  readonly onWallTime: (job: SiteJob, reason: Reason) => void;
  /** The signed jobs this site met (replays refused), and the age window for a job met for the first time. */
  readonly ledger: SiteJobLedger;
  readonly maxJobAgeMs: number;
}

/**
 * Admissions of every site in this process, a batch per turn of the event loop (the server's deployer paces its
 * fan-out with the same {@link Pacer}): a process that runs thousands of sites (a simulator, the scale bench's
 * workers) is offered a job for all of them at once, and admitting them in one go (signature, policy, ledger,
 * audit) kept its loop from reading the sockets long enough for its peers to judge it dead.
 */
const ADMISSIONS = new Pacer();

/** Refusals that waiting cures (the server offers the job again): not remembered as final. */
const TEMPORARY = (code: string): boolean => code === 'E_POLICY_RESOURCES_BUSY' || code === 'E_RUNTIME_TIMEOUT' || code === 'E_RUNTIME_DISCONNECTED' || code === 'E_RUNTIME_JOB_STATE' || code.startsWith('E_ATTEST_');

/**
 * The jobs deployed at a site: admission (@flare/policy decides), building (the job's folder, its verified
 * code, the learner, the filter chains), and the end of a job for any reason (the server said it ended or
 * aborted it, its wall time ran out, the server went away): tasks stop, the learner is closed, the
 * reservation released, the job's folder removed unless the site keeps them.
 */
export class SiteJobs {
  readonly #o: SiteJobsOptions;
  readonly #jobs = new Map<string, SiteJob>();
  /** Jobs being ended (their task stopping, learner closing): a new deploy of the same job waits for it. */
  readonly #ending = new Map<string, Promise<void>>();

  constructor(o: SiteJobsOptions) {
    this.#o = o;
  }

  get(id: string): SiteJob | undefined {
    return this.#jobs.get(id);
  }

  ids(): string[] {
    return [...this.#jobs.keys()];
  }

  /**
   * Admits and builds job `id` from its bundle; returns its scope and filters for the audit. The submitter is
   * the holder of the certificate that signed the job; `claimed` (the server's word) must name the same admin.
   * @throws the deciding component's FlareError (E_POLICY_*, E_RUNTIME_JOB_INVALID, E_RUNTIME_COMPONENT_UNKNOWN, ...).
   */
  async deploy(id: string, claimed: Pick<Identity, 'name' | 'org'>, bundleBytes: Uint8Array, ref: string | undefined): Promise<SiteJob> {
    const o = this.#o;
    const site = o.site.name;
    await ADMISSIONS.turn();
    await this.#ending.get(id);
    if (this.#jobs.has(id)) throw new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${id} is already deployed at ${site}`);
    // A signed job runs once: one this site ended or refused is a replay. One it still runs (the connection
    // dropped, the site restarted) may be deployed again: that is how a job resumes.
    const prior = o.ledger.get(id);
    if (prior !== undefined && prior.state !== 'running') {
      const message = `job ${id} (signed ${prior.signed_at}) ${prior.state === 'ended' ? 'already ran' : 'was refused'} at ${site} (${prior.code ?? '?'}, ${prior.at}): a signed job runs once, and the server offers it again`;
      o.audit({ action: 'job_replay_refused', job: id, ref, user: claimed.name, msg: message, data: { code: 'E_POLICY_JOB_REPLAYED', site, claimed_submitter: `${claimed.name} (${claimed.org})`, manifest: prior.manifest, prior: prior.state } });
      throw new PolicyError('E_POLICY_JOB_REPLAYED', message);
    }
    let verified: { readonly signedAt: string; readonly manifest: string } | undefined;
    try {
      return await this.#build(id, claimed, bundleBytes, ref, {
        ...(prior === undefined ? { freshness: { maxAgeMs: o.maxJobAgeMs } } : {}),
        onVerified: (v) => {
          verified = v;
        },
      });
    } catch (e) {
      const code = isFlareError(e) ? e.code : 'E_RUNTIME_DEPLOY_REFUSED';
      // Only a job whose signature verified is remembered (a forged one must not block the real job's id).
      if (verified !== undefined && !TEMPORARY(code)) {
        await o.ledger.record(id, { state: 'refused', signed_at: verified.signedAt, manifest: verified.manifest, code }).catch((w: unknown) => o.logger.warn('the job ledger could not be written', { job: id, error: w instanceof Error ? w.message : String(w) }));
      }
      throw e;
    }
  }

  async #build(id: string, claimed: Pick<Identity, 'name' | 'org'>, bundleBytes: Uint8Array, ref: string | undefined, check: { readonly freshness?: { readonly maxAgeMs: number }; readonly onVerified: (v: { readonly signedAt: string; readonly manifest: string }) => void }): Promise<SiteJob> {
    const o = this.#o;
    const site = o.site.name;
    const bundle = decodeJobBundle(bundleBytes, o.limits);
    const { definition } = parseMetaJson(bundle.meta);
    const workflow = o.workflows.get(definition.workflow);
    if (workflow === undefined) throw new FlareRuntimeError('E_RUNTIME_COMPONENT_UNKNOWN', `${site} does not run workflow '${definition.workflow}'`);
    const admission = admit({ job: id, definition, bundle, claimed, ...check }, o.policy, o.site, o.filters, (e) => o.audit({ ...e, ref: e.ref ?? ref }));
    const submitter: JobSigner = { name: admission.submitter.name, org: admission.submitter.org, type: 'admin', role: admission.submitter.role };
    try {
      // The site's own login (local/authentication.json): the token the job carries for this site must be the signer's.
      const authenticator = typeof o.policy.authenticator === 'function' ? o.policy.authenticator() : o.policy.authenticator;
      const login = await authenticateSubmitter(authenticator, { site, definition, submitter });
      if (login !== undefined) o.audit({ action: 'submitter_authenticated', job: id, ref, user: submitter.name, msg: `${login.authenticator}: token of ${login.name} (role ${login.role}) verified`, data: { authenticator: login.authenticator, ...(login.expiresAt === undefined ? {} : { expires_at: new Date(login.expiresAt).toISOString() }) } });
      await o.events.emit('before-deploy', { site, job: id, definition, submitter });
    } catch (e) {
      admission.reservation.release();
      throw e;
    }
    // `runs/`, not `jobs/`: a server's job store is `<workspace>/jobs`, and one folder may serve both in a test.
    const jobWorkspace = join(o.workspace, 'runs', id);
    try {
      await mkdir(jobWorkspace, { recursive: true, mode: 0o700 });
      let customDir: string | undefined;
      if (admission.byoc) {
        // The files are the ones whose signature @flare/policy verified; their paths were checked there too.
        customDir = join(jobWorkspace, 'custom');
        for (const [name, bytes] of bundle.files) {
          const path = join(customDir, ...name.split('/'));
          await mkdir(dirname(path), { recursive: true, mode: 0o700 });
          await writeFile(path, bytes, { mode: 0o600 });
        }
        o.audit({ action: 'byoc_verified', job: id, ref, user: submitter.name, msg: `${bundle.files.size} custom files signed by ${submitter.name}` });
      }
      const filters = { data: admission.dataFilters.map((f) => f.name), result: admission.resultFilters.map((f) => f.name) };
      // The workflow's own rules (e.g. secure aggregation refuses a scope that encrypts updates), before any learner is built.
      workflow.admit?.({ site, job: id, definition, filters });
      // What round 0 must bring: the tensors of the initial model the admin signed.
      const initialModel = initialModelDigest(bundle.model);
      const env: LearnerEnv = { site, workspace: o.workspace, job: id, jobWorkspace, ...(customDir === undefined ? {} : { customDir }), logger: o.logger, definition };
      const chains = buildChains(admission, { site, workspace: o.workspace, logger: o.logger });
      await o.events.emit('before-build-component', { site, job: id, component: definition.learner.name, role: 'learner' });
      const lf = o.learners.get(definition.learner.name);
      if (lf === undefined) throw new FlareRuntimeError('E_RUNTIME_COMPONENT_UNKNOWN', `${site} has no learner '${definition.learner.name}'`);
      const largs = lf.args.safeParse(definition.learner.args);
      if (!largs.success) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: learner.args of '${definition.learner.name}': ${largs.error.issues[0]?.message ?? 'invalid'}`);
      const learner = await lf.create(largs.data, env);
      const job: SiteJob = {
        id,
        definition,
        workflow,
        learner,
        dataChain: chains.data,
        resultChain: chains.result,
        scope: admission.scope?.name ?? '(none)',
        privacy: admission.scope,
        filters,
        submitter,
        manifest: admission.manifest,
        reservation: admission.reservation,
        jobWorkspace,
        ...(initialModel === undefined ? {} : { initialModel }),
        abort: new AbortController(),
        memory: new Map(),
        queue: Promise.resolve(),
      };
      // Durable before the site says yes: a replay of this job after it ends is refused, even after a restart.
      await o.ledger.record(id, { state: 'running', signed_at: admission.signedAt, manifest: admission.manifest });
      this.#jobs.set(id, job);
      admission.reservation.signal.addEventListener('abort', () => {
        const reason = admission.reservation.signal.reason as unknown;
        // A release aborts the signal too, after end() forgot the job: only a wall time that ran out gets here.
        if (this.#jobs.get(id) === job) {
          o.onWallTime(job, { code: 'E_POLICY_WALL_TIME', message: reason instanceof Error ? reason.message : `job ${id} reached its wall time` });
        }
      }, { once: true });
      return job;
    } catch (e) {
      admission.reservation.release();
      if (!o.keepJobWorkspaces) await rm(jobWorkspace, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Ends job `id` here: stops its tasks, waits for the one running to stop, closes the learner, releases the
   * reservation, removes the job's folder (unless kept), and audits why. Safe to call twice.
   */
  async end(id: string, why: Reason, ref?: string): Promise<void> {
    const job = this.#jobs.get(id);
    if (job === undefined) return this.#ending.get(id);
    this.#jobs.delete(id);
    const ending = this.#release(job, why, ref).finally(() => this.#ending.delete(id));
    this.#ending.set(id, ending);
    return ending;
  }

  async #release(job: SiteJob, why: Reason, ref: string | undefined): Promise<void> {
    const id = job.id;
    job.abort.abort(new FlareRuntimeError('E_RUNTIME_ABORTED', `job ${id} ended here: ${why.code}`));
    await job.queue.catch(() => undefined);
    try {
      await job.learner.close?.();
    } catch (e) {
      this.#o.logger.warn('the learner failed to close', { job: id, error: e instanceof Error ? e.message : String(e) });
    }
    job.reservation.release();
    job.memory.clear();
    // Ended for good unless the server went away (then the job may resume when it offers it again).
    if (why.code !== 'E_RUNTIME_DISCONNECTED') {
      await this.#o.ledger.end(id, why.code).catch((e: unknown) => this.#o.logger.warn('the job ledger could not be written', { job: id, error: e instanceof Error ? e.message : String(e) }));
    }
    if (!this.#o.keepJobWorkspaces) await rm(job.jobWorkspace, { recursive: true, force: true }).catch(() => undefined);
    this.#o.audit({ action: 'job_released', job: id, ref, msg: `job ${job.definition.name} ended here (${why.code}: ${why.message}); its resources are released`.slice(0, 2000), data: { code: why.code } });
    this.#o.logger.info('job ended here', { job: id, code: why.code });
    await this.#o.events.emit('after-job', { job: id, status: why.code, site: this.#o.site.name }).catch(() => undefined);
  }

  /** Ends every job (the server went away, or the site stops). */
  async endAll(why: Reason): Promise<void> {
    await Promise.all(this.ids().map((id) => this.end(id, why)));
  }
}
