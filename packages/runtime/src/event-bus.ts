import type { Identity } from '@flare/core';
import type { PeerIdentity } from './protocol/channel.js';
import type { JobDefinition } from './protocol/job-definition.js';

/**
 * The events plugins can hook, and what each carries. A handler that throws vetoes the step (the error,
 * ideally a FlareError, is what the engine reports and audits).
 */
export interface RuntimeEvents {
  /** A participant authenticated and is about to be registered (server). */
  'before-register': { readonly peer: PeerIdentity; readonly resources: Readonly<Record<string, number>> };
  /** A job is about to be deployed (server: to `site`; client: at this site). */
  'before-deploy': { readonly site: string; readonly job: string; readonly definition: JobDefinition; readonly submitter: Identity };
  /** A component is about to be built from the job's definition at a site. */
  'before-build-component': { readonly site: string; readonly job: string; readonly component: string; readonly role: 'learner' | 'data-filter' | 'result-filter' };
  /** A site is about to run a task. */
  'before-task': { readonly site: string; readonly job: string; readonly round: number; readonly ref: string };
  /** A site finished a task (or refused it). */
  'after-task': { readonly site: string; readonly job: string; readonly round: number; readonly ok: boolean; readonly code?: string };
  /** The server accepted or ignored a result. */
  'after-result': { readonly site: string; readonly job: string; readonly round: number; readonly accepted: boolean; readonly reason?: string };
  /** A round completed and was checkpointed. */
  'after-round': { readonly job: string; readonly round: number; readonly contributors: readonly string[] };
  /** A job ended (server: for the federation; site: here, with why when it did not finish). */
  'after-job': { readonly job: string; readonly status: string; readonly site?: string };
}

/** A handler for event `K`. */
export type RuntimeEventHandler<K extends keyof RuntimeEvents> = (event: RuntimeEvents[K]) => void | Promise<void>;

/**
 * A small typed event bus for authenticator, authorization and component-safety plugins (FLARE's
 * FLComponent events). `emit` runs handlers in registration order and awaits each; the first that throws
 * stops the step and its error propagates to the engine, which refuses and audits it.
 *
 * @example
 * ```ts
 * bus.on('before-deploy', ({ definition }) => { if (definition.rounds > 100) throw new PolicyError(...) });
 * ```
 */
export class EventBus {
  readonly #handlers = new Map<keyof RuntimeEvents, Array<RuntimeEventHandler<keyof RuntimeEvents>>>();

  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof RuntimeEvents>(event: K, handler: RuntimeEventHandler<K>): () => void {
    const list = this.#handlers.get(event) ?? [];
    list.push(handler as RuntimeEventHandler<keyof RuntimeEvents>);
    this.#handlers.set(event, list);
    return () => {
      const at = list.indexOf(handler as RuntimeEventHandler<keyof RuntimeEvents>);
      if (at >= 0) list.splice(at, 1);
    };
  }

  /** Runs every handler of `event` in order; rejects with the first handler's error. */
  async emit<K extends keyof RuntimeEvents>(event: K, payload: RuntimeEvents[K]): Promise<void> {
    for (const h of [...(this.#handlers.get(event) ?? [])]) await (h as RuntimeEventHandler<K>)(payload);
  }
}
