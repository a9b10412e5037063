import { randomUUID } from 'node:crypto';
import { FlareRuntimeError, encodeModel, type FLModel } from '@flare/core';
import { errorFromReason } from '../errors.js';
import { outgoing, type MessageOf } from '../protocol/messages.js';
import { PendingRequests } from '../protocol/pending.js';
import type { TaskResult, WorkflowTask } from '../workflows/workflow.js';
import { Pacer } from './broadcast.js';
import type { SiteRegistry } from './registry.js';

interface Waiting {
  readonly job: string;
  readonly site: string;
  readonly sent: number;
}

/**
 * Sends workflow tasks to sites and matches their results: one {@link PendingRequests} for every task in
 * flight, keyed by task id and owned by the site it went to, so a site that disconnects fails its tasks at
 * once and a result from anyone else is never taken. A model sent to many sites is encoded once.
 */
export class TaskDispatcher {
  readonly #pending = new PendingRequests<TaskResult, string>();
  readonly #waiting = new Map<string, Waiting>();
  readonly #registry: SiteRegistry;
  // The last model encoded, by identity: a round broadcasts one model object to every site (issue #18 item 4).
  readonly #encoded = new WeakMap<FLModel, Uint8Array>();
  readonly #pacer = new Pacer();

  constructor(registry: SiteRegistry) {
    this.#registry = registry;
  }

  #bytesOf(task: WorkflowTask): Uint8Array {
    if (task.model === undefined) return task.payload ?? new Uint8Array(0);
    let b = this.#encoded.get(task.model);
    if (b === undefined) this.#encoded.set(task.model, (b = encodeModel(task.model)));
    return b;
  }

  /** Sends `task` of `job` to `site`; resolves with its answer or rejects with its code, a disconnect or `signal`'s reason. */
  async send(job: string, site: string, task: WorkflowTask, signal: AbortSignal): Promise<TaskResult> {
    // A round's tasks go out a batch per turn of the event loop: its sockets are read in between.
    await this.#pacer.turn();
    signal.throwIfAborted();
    const entry = this.#registry.get(site);
    if (entry === undefined) throw new FlareRuntimeError('E_RUNTIME_DISCONNECTED', `site ${site} is not connected`);
    const id = randomUUID();
    const bytes = this.#bytesOf(task);
    const answer = this.#pending.open(id, site, { signal });
    this.#waiting.set(id, { job, site, sent: bytes.byteLength });
    const forget = (): void => void this.#waiting.delete(id);
    answer.then(forget, forget);
    entry.channel
      .send(outgoing({ t: 'task', job, round: task.round, task: id, kind: task.kind, ...(task.ref === undefined ? {} : { ref: task.ref }), ...(task.data === undefined ? {} : { data: task.data }) }), bytes)
      .catch((e: unknown) => this.#pending.reject(id, e));
    return answer;
  }

  /** Takes a site's `result`; false when no task of that site waits for it (late, or never sent). */
  result(site: string, msg: MessageOf<'result'>, payload: Uint8Array): boolean {
    const w = this.#waiting.get(msg.task);
    if (w === undefined || w.site !== site) return false;
    if (!msg.ok) {
      const e = errorFromReason(msg.error, 'E_RUNTIME_TASK_FAILED');
      e.message = `${site}: ${e.message}`;
      return this.#pending.reject(msg.task, e);
    }
    return this.#pending.settle(msg.task, site, {
      site,
      payload,
      metrics: msg.metrics,
      bytes: w.sent + payload.byteLength,
      ...(msg.ref === undefined ? {} : { ref: msg.ref }),
      ...(msg.data === undefined ? {} : { data: msg.data }),
    });
  }

  /** Fails every task a site owes (it disconnected or left). */
  failSite(site: string, error: unknown): void {
    this.#pending.rejectOwnedBy(site, error);
  }

  /** Fails the tasks of one job a site owes (it left the job). */
  failSiteJob(site: string, job: string, error: unknown): void {
    for (const [id, w] of [...this.#waiting]) if (w.site === site && w.job === job) this.#pending.reject(id, error);
  }

  /** Fails every task in flight (shutdown). */
  failAll(error: unknown): void {
    this.#pending.rejectAll(error);
  }
}
