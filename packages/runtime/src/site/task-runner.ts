import { FlareRuntimeError, type AuditEventInput, type AuditHook, type Filter, type FilterContext, type Learner, type Logger } from '@flare/core';
import type { JobSigner, PrivacyScope, Reservation } from '@flare/policy';
import type { LooseAuditEvent } from '../audit.js';
import { reasonOf } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import type { PeerChannel } from '../protocol/channel.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import { outgoing, type MessageOf } from '../protocol/messages.js';
import type { SiteWorkflow } from '../workflows/workflow.js';
import { checkInitialModel } from './initial-model.js';

/** A job deployed at this site: what its tasks run with, and what its end releases. */
export interface SiteJob {
  readonly id: string;
  readonly definition: JobDefinition;
  readonly workflow: SiteWorkflow;
  readonly learner: Learner & { close?(): Promise<void> | void };
  readonly dataChain: Filter;
  readonly resultChain: Filter;
  /** The privacy scope's name, for audit lines. */
  readonly scope: string;
  /** The privacy scope itself (undefined at a site without privacy.json), for the workflow's scope rules. */
  readonly privacy: PrivacyScope | undefined;
  /** The filters each chain runs, in order (site scope's first), for audit lines. */
  readonly filters: { readonly data: readonly string[]; readonly result: readonly string[] };
  /** Who submitted the job (the holder of the certificate that signed it), for site-level rights such as abort_job. */
  readonly submitter: JobSigner;
  readonly reservation: Reservation;
  readonly jobWorkspace: string;
  /** SHA-256 of the admin-signed job manifest (what @flare/policy verified at deploy). */
  readonly manifest?: string;
  /** Digest of the signed initial model's tensors (`tensorDigest`): the global model of round 0 must match it. */
  readonly initialModel?: string;
  /** Aborted when the job ends here (end, abort, wall time, lost server): tasks stop. */
  readonly abort: AbortController;
  /** What the job's site workflow keeps between tasks (see SiteTaskContext.memory); dropped with the job. */
  readonly memory: Map<string, unknown>;
  /** Tasks run one at a time per job (a learner is not re-entrant). */
  queue: Promise<void>;
}

/** What the task runner needs from the site. */
export interface TaskRunnerOptions {
  readonly site: string;
  readonly audit: (e: LooseAuditEvent) => string | undefined;
  readonly logger: Logger;
  readonly events: EventBus;
}

/** Numbers filters report about privacy spent, passed back with the result (they are accounting, not data). */
const PRIVACY_KEYS = /^(epsilon|delta|epsilon_spent|epsilon_total)/;

/**
 * Runs one task of a deployed job: the workflow's handler for the task kind, with the job's learner and its
 * filter chains (the site scope's filters first, then the job's, as @flare/policy composed them). Every step
 * is an audit event whose `ref` is the server's event for the task; a failure is answered with its own code
 * (E_DP_* is audited as `privacy_refused`).
 */
export async function runTask(o: TaskRunnerOptions, ch: PeerChannel, job: SiteJob, msg: MessageOf<'task'>, payload: Uint8Array): Promise<void> {
  const recv = o.audit({ action: 'task_received', job: job.id, ref: msg.ref, scope: job.scope, msg: `${msg.kind} task for round ${msg.round}`, data: { round: msg.round, kind: msg.kind } });
  const privacy: Record<string, number> = {};
  // Filters report what they did through the hook (e.g. epsilon spent, HE cost); numbers come back with the result.
  const filterAudit: AuditHook = (e: AuditEventInput) => {
    for (const [k, v] of Object.entries(e.data ?? {})) if (typeof v === 'number' && PRIVACY_KEYS.test(k)) privacy[k] = v;
    const ms = e.data?.['ms'];
    if (e.action === 'he_encrypted' && typeof ms === 'number') {
      privacy['he_encrypt_ms'] = ms;
      if (typeof e.data?.['bytes'] === 'number') privacy['he_upload_bytes'] = e.data['bytes'];
    }
    if (e.action === 'he_decrypted' && typeof ms === 'number') privacy['he_decrypt_ms'] = ms;
    return o.audit({ ...e, job: job.id, ref: e.ref ?? recv });
  };
  const signal = job.abort.signal;
  const fctx: FilterContext = { site: o.site, job: job.id, task: msg.kind, round: msg.round, peer: ch.peer.name, audit: filterAudit, signal };
  const reply = (fields: Partial<MessageOf<'result'>>, body?: Uint8Array): Promise<void> =>
    ch.send(outgoing({ t: 'result', job: job.id, round: msg.round, task: msg.task, kind: msg.kind, ok: true, metrics: {}, ...fields }), body);
  // The first model of a round-0 task the workflow marks carries the initial model: it must be the signed one.
  let initial = msg.round === 0 && bringsInitialModel(job, msg) ? job.initialModel : undefined;
  try {
    const handler = job.workflow.tasks.get(msg.kind);
    if (handler === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `workflow ${job.workflow.name} has no task '${msg.kind}' at this site`);
    await o.events.emit('before-task', { site: o.site, job: job.id, round: msg.round, ref: msg.ref ?? '' });
    const answer = await handler({
      site: o.site,
      job: job.id,
      round: msg.round,
      kind: msg.kind,
      ...(msg.data === undefined ? {} : { data: msg.data }),
      payload,
      definition: job.definition,
      ...(job.manifest === undefined ? {} : { manifest: job.manifest }),
      learner: job.learner,
      memory: job.memory,
      scope: job.privacy,
      filterIn: async (m) => {
        if (initial !== undefined) {
          const expected = initial;
          initial = undefined;
          try {
            checkInitialModel(m, expected, job.id);
          } catch (e) {
            o.audit({ action: 'initial_model_refused', job: job.id, ref: recv, user: ch.peer.name, msg: reasonOf(e).message, data: { code: 'E_RUNTIME_INITIAL_MODEL', site: o.site, server: ch.peer.name, round: msg.round, kind: msg.kind } });
            throw e;
          }
        }
        return job.dataChain.apply(m, fctx);
      },
      filterOut: async (m) => job.resultChain.apply(m, fctx),
      audit: (e) => o.audit({ ...e, job: e.job ?? job.id, ref: e.ref ?? recv }),
      signal,
      logger: o.logger,
    });
    signal.throwIfAborted();
    const body = answer.payload ?? new Uint8Array(0);
    const ref = o.audit({ action: 'result_sent', job: job.id, ref: msg.ref, scope: job.scope, msg: `${msg.kind} result for round ${msg.round}`, data: { round: msg.round, bytes: body.byteLength } });
    await reply({ metrics: { ...answer.metrics, ...privacy }, ...(ref === undefined ? {} : { ref }), ...(answer.data === undefined ? {} : { data: answer.data }) }, body);
    await o.events.emit('after-task', { site: o.site, job: job.id, round: msg.round, ok: true });
  } catch (e) {
    const error = reasonOf(e);
    const ref = o.audit({ action: error.code.startsWith('E_DP_') ? 'privacy_refused' : 'task_failed', job: job.id, ref: recv, msg: `${error.code}: ${error.message}`, data: { round: msg.round, code: error.code } });
    o.logger.warn('task failed', { job: job.id, round: msg.round, code: error.code, reason: error.message });
    await reply({ ok: false, error, metrics: privacy, ...(ref === undefined ? {} : { ref }) }).catch(() => undefined);
    await o.events.emit('after-task', { site: o.site, job: job.id, round: msg.round, ok: false, code: error.code }).catch(() => undefined);
  }
}

/** Whether the job's workflow says this round-0 task brings the initial model (see SiteWorkflow.initialModelTasks). */
function bringsInitialModel(job: SiteJob, msg: MessageOf<'task'>): boolean {
  const which = job.workflow.initialModelTasks;
  if (which === undefined) return false;
  return typeof which === 'function' ? which({ kind: msg.kind, data: msg.data, definition: job.definition }) : which.includes(msg.kind);
}
