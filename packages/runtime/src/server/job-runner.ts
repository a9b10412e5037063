import { FlareRuntimeError, type AggregationScheme, type Aggregator, type AuditHook, type FLModel, type Logger } from '@flare/core';
import type { LooseAuditEvent } from '../audit.js';
import { reasonOf, type Reason } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import { outgoing, type JobEndStatus } from '../protocol/messages.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import { JobAggregation } from '../workflows/aggregation.js';
import type { Workflow, WorkflowContext } from '../workflows/workflow.js';
import { namedSites, type ActiveJob } from './active-job.js';
import type { Deployer } from './deployer.js';
import { CHECKPOINT_SAVED_ACTION, type CheckpointHead, type JobStore, type RoundRecord } from './job-store.js';
import type { SiteRegistry } from './registry.js';
import type { TaskDispatcher } from './tasks.js';

/** The job's plaintext aggregator, made when the job (re)starts. */
export type AggregatorFactory = (definition: JobDefinition, env: { readonly global: FLModel; readonly round: number; readonly state?: Uint8Array; readonly audit?: AuditHook }) => Aggregator;

/** What running a job needs from the server. */
export interface JobRunnerOptions {
  readonly registry: SiteRegistry;
  readonly store: JobStore;
  readonly deployer: Deployer;
  readonly tasks: TaskDispatcher;
  readonly workflows: ReadonlyMap<string, Workflow>;
  readonly aggregator: AggregatorFactory;
  /** The aggregator's state to checkpoint after each round (a server optimizer's moments), if any. */
  readonly aggregatorState?: (aggregator: Aggregator) => Uint8Array | undefined;
  readonly schemes: readonly AggregationScheme[];
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly events: EventBus;
  /** Why a site was refused for good (its attestation failed), if it was: recorded for the jobs naming it. */
  readonly refusedForGood: (site: string) => Reason | undefined;
  /** True once the server is shutting down: a job interrupted then stays RUNNING, to resume. */
  readonly closing: () => boolean;
  readonly onRound?: (job: string, record: RoundRecord) => void;
  /**
   * The newest checkpoint of a job the server's audit log recorded (see `checkpointHeadsFromAudit`): resuming
   * from an older one is refused (E_RUNTIME_CHECKPOINT_ROLLBACK). `onCheckpoint` hears each new one.
   */
  readonly checkpoints?: { readonly newest: (job: string) => CheckpointHead | undefined; readonly saved: (job: string, head: CheckpointHead) => void };
}

/**
 * Runs one job from deployment to its end: deploys it to the sites present (each decides under its own
 * policy), resumes from the last checkpoint, runs the job's workflow with the job's aggregation, records the
 * outcome, and tells every site the job ended so each releases what it reserved. A job interrupted by a
 * server shutdown stays RUNNING on disk and resumes at the next start.
 */
export async function runJob(o: JobRunnerOptions, job: ActiveJob, present: readonly string[]): Promise<void> {
  const def = job.definition;
  let aggregation: JobAggregation | undefined;
  let status: JobEndStatus = 'FAILED';
  let error: Reason | undefined;
  try {
    const workflow = o.workflows.get(def.workflow);
    if (workflow === undefined) throw new FlareRuntimeError('E_RUNTIME_JOB_INVALID', `meta.json: workflow '${def.workflow}' is not one this server runs (${[...o.workflows.keys()].join(', ')})`);
    await Promise.all(present.map((s) => o.deployer.deploy(job, s)));
    // Named sites refused for good (attestation) will not come back: the record says why they are missing.
    const gone = namedSites(def, () => o.registry.names()).flatMap((s) => {
      const r = job.deployed.has(s) ? undefined : o.refusedForGood(s);
      return r === undefined ? [] : [[s, r] as const];
    });
    if (gone.length > 0) {
      for (const [s, r] of gone) job.refused.set(s, r);
      await o.store.update(job.id, (rec) => {
        for (const [s, r] of gone) rec.refused[s] ??= `${r.code}: ${r.message}`.slice(0, 2000);
      });
    }
    if (job.deployed.size < def.min_clients) {
      const why = [...job.refused].map(([s, r]) => `${s}: ${r.code}`).join(', ');
      throw new FlareRuntimeError('E_RUNTIME_DEPLOY_REFUSED', `only ${job.deployed.size} sites accepted the job, min_clients is ${def.min_clients}${why === '' ? '' : ` (${why})`}`);
    }
    // A checkpoint that does not verify (planted, changed, torn) is refused and audited; the one before it is used.
    const newest = o.checkpoints?.newest(job.id);
    const cp = await o.store.loadCheckpoint(job.id, {
      ...(newest === undefined ? {} : { newest }),
      onRefused: (e, file) => {
        o.audit({ action: 'checkpoint_refused', job: job.id, msg: `${e.code}: ${e.message}`.slice(0, 2000), data: { code: e.code, file } });
        o.logger.warn('checkpoint refused; falling back to the one before it', { job: job.id, code: e.code, file });
      },
    });
    // A partial checkpoint is progress inside a round (a cyclic hop): that round resumes.
    const start = cp === undefined ? 0 : cp.partial === true ? cp.round : cp.round + 1;
    const global = cp === undefined ? await o.store.initialModel(job.id) : cp.model;
    // What the aggregator clips, caps or refuses is audited under this job.
    const audit: AuditHook = (e) => o.audit({ ...e, job: job.id });
    const plain = o.aggregator(def, { global, round: start, audit, ...(cp?.aggregator === undefined ? {} : { state: cp.aggregator }) });
    aggregation = new JobAggregation({ plain, schemes: o.schemes });
    await o.store.update(job.id, (r) => {
      r.status = 'RUNNING';
    });
    o.audit({ action: cp === undefined ? 'job_started' : 'job_resumed', job: job.id, user: job.submitter.name, msg: cp === undefined ? `job ${def.name} started` : `job ${def.name} resumed from the checkpoint of round ${cp.round}`, data: { start_round: start, sites: [...job.deployed] } });
    o.logger.info(cp === undefined ? 'job started' : 'job resumed', { job: job.id, startRound: start, sites: [...job.deployed] });
    const agg = aggregation;
    // Each checkpoint goes into the hash-chained audit log: on resume, an older one on disk is a rollback.
    const recordCheckpoint = (round: number, partial: boolean, head: CheckpointHead): void => {
      o.audit({ action: CHECKPOINT_SAVED_ACTION, job: job.id, msg: `checkpoint ${head.seq} (round ${round}${partial ? ', in progress' : ''})`, data: { round, seq: head.seq, sha256: head.sha256, partial } });
      o.checkpoints?.saved(job.id, head);
    };
    const ctx: WorkflowContext = {
      job: job.id,
      definition: def,
      start: { round: start, global, ...(cp?.workflow === undefined ? {} : { state: cp.workflow }) },
      sites: () => [...job.deployed].filter((s) => o.registry.get(s) !== undefined).sort(),
      send: (site, task) => o.tasks.send(job.id, site, task, job.abort.signal),
      aggregation: agg,
      checkpoint: async (round, model, record, state) => {
        const aggregatorState = o.aggregatorState?.(agg.plain);
        recordCheckpoint(round, false, await o.store.saveCheckpoint(job.id, round, model, { ...(aggregatorState === undefined ? {} : { aggregator: aggregatorState }), ...(state === undefined ? {} : { workflow: state }) }));
        await o.store.update(job.id, (r) => {
          r.rounds_done = round + 1;
          r.history = r.history.filter((h) => h.round !== round);
          r.history.push(record);
        });
        o.onRound?.(job.id, record);
      },
      saveProgress: async (round, model, state) => {
        const aggregatorState = o.aggregatorState?.(agg.plain);
        recordCheckpoint(round, true, await o.store.saveCheckpoint(job.id, round, model, { workflow: state, partial: true, ...(aggregatorState === undefined ? {} : { aggregator: aggregatorState }) }));
      },
      saveResult: async (name, value) => {
        await o.store.saveResult(job.id, name, value);
        o.audit({ action: 'result_saved', job: job.id, msg: `job result '${name}' saved`, data: { name } });
      },
      roundMetrics: async (round, metrics, perSite) => {
        await o.store.update(job.id, (r) => {
          const h = r.history.find((x) => x.round === round);
          if (h === undefined) return;
          h.metrics = { ...metrics };
          h.site_validation = Object.fromEntries(Object.entries(perSite).map(([s, m]) => [s, { ...m }]));
        });
      },
      audit: o.audit,
      logger: o.logger,
      events: o.events,
      signal: job.abort.signal,
    };
    await workflow.run(ctx);
    status = 'FINISHED';
  } catch (e) {
    if (o.closing() && !job.aborted) return; // shutting down: stays RUNNING, resumes on restart
    status = job.aborted ? 'ABORTED' : 'FAILED';
    if (!job.aborted) error = reasonOf(e, 'E_RUNTIME_TASK_FAILED');
  } finally {
    aggregation?.dispose();
    // Tasks still out (late ones) end with the job: nothing waits for them any more.
    if (!job.abort.signal.aborted) job.abort.abort(new FlareRuntimeError('E_RUNTIME_JOB_STATE', `job ${job.id} ended`));
  }
  await endJob(o, job, status, error);
}

/** Records how a job ended, audits it, and tells every site that ran it (they release what they reserved). */
async function endJob(o: JobRunnerOptions, job: ActiveJob, status: JobEndStatus, error: Reason | undefined): Promise<void> {
  const name = job.definition.name;
  if (status !== 'ABORTED') {
    await o.store.update(job.id, (r) => {
      r.status = status;
      r.ended_at = new Date().toISOString();
      if (error !== undefined) r.error = { code: error.code, message: error.message.slice(0, 2000) };
    });
  }
  const ref =
    status === 'FINISHED'
      ? o.audit({ action: 'job_finished', job: job.id, msg: `job ${name} finished ${job.definition.rounds} rounds` })
      : status === 'FAILED'
        ? o.audit({ action: 'job_failed', job: job.id, msg: `job ${name} failed: ${error?.code ?? ''}: ${error?.message ?? ''}`, data: { code: error?.code ?? null } })
        : undefined;
  if (status === 'FAILED') o.logger.error('job failed', { job: job.id, ...error });
  else o.logger.info(`job ${status.toLowerCase()}`, { job: job.id });
  // Every site that took the job, connected now or not yet gone: each releases its reservation and learner.
  const told = new Set([...job.deployed, ...job.deploying]);
  for (const site of told) {
    const ch = o.registry.get(site)?.channel;
    if (ch === undefined) continue;
    // ABORTED carries the admin's signed abort: a site records an abort only when an admin signed it.
    const body = status === 'ABORTED' ? job.abortSignature : undefined;
    ch.send(outgoing({ t: 'job_end', job: job.id, status, ...(ref === undefined ? {} : { ref }), ...(error === undefined ? {} : { error: { code: error.code, message: error.message.slice(0, 2000) } }) }), body).catch(() => undefined);
  }
  await o.events.emit('after-job', { job: job.id, status }).catch((e: unknown) => o.logger.warn('after-job handler failed', { job: job.id, code: reasonOf(e).code }));
}
