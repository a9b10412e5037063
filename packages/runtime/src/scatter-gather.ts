import {
  FlareRuntimeError,
  META,
  add,
  l2norm,
  silentLogger,
  type Aggregator,
  type AuditHook,
  type FLModel,
  type Logger,
} from '@flare/core';
import { auditor } from './audit-util.js';
import type { EventBus } from './event-bus.js';
import type { RoundRecord } from './job-store.js';

/** What a site sent back for one task. */
export interface TaskOutcome {
  /** The update (train) or an empty model (validate). */
  readonly model?: FLModel;
  /** Metrics the site attached (validation of the global model it received, epsilon spent, ...). */
  readonly metrics: Readonly<Record<string, number>>;
  /** The site's audit event id for the result (logged as `ref`). */
  readonly ref?: string;
  /** Model bytes moved for this task (both directions). */
  readonly bytes: number;
}

/** How the workflow reaches sites: injected, so it runs over authenticated channels or in memory alike. */
export interface ScatterGatherComms {
  /** Sites that can take a task now (deployed to and alive). */
  sites(): readonly string[];
  /**
   * Sends a task and resolves with the site's outcome; rejects when the site refuses, fails or disconnects
   * (a FlareError with the site's code). `ref` is the server's audit event id for the task.
   */
  sendTask(site: string, task: { readonly round: number; readonly kind: 'train' | 'validate'; readonly model: FLModel; readonly ref: string | undefined }): Promise<TaskOutcome>;
}

/** Options of {@link runScatterGather}. */
export interface ScatterGatherOptions {
  readonly job: string;
  readonly rounds: number;
  readonly minClients: number;
  readonly roundTimeoutMs: number;
  /** Re-runs of a round that ended below minClients (default 1). */
  readonly retries?: number;
  /** The global model to start from (initial model, or the checkpoint's). */
  readonly global: FLModel;
  /** The first round to run (0, or the checkpoint's round + 1). */
  readonly startRound: number;
  readonly aggregator: Aggregator;
  readonly comms: ScatterGatherComms;
  /** Called after each round's aggregation; the round counts as done (acknowledged) when it resolves. */
  readonly checkpoint: (round: number, global: FLModel, record: RoundRecord, previousMetrics: Record<string, number>) => Promise<void>;
  /** Called with the validation metrics of the final global model (after the last round). */
  readonly finalMetrics?: (round: number, metrics: Record<string, number>) => Promise<void>;
  readonly audit?: AuditHook;
  readonly logger?: Logger;
  readonly events?: EventBus;
  readonly signal?: AbortSignal;
  /** Round progress for a UI. */
  readonly onRound?: (record: RoundRecord) => void;
}

function timeout(ms: number, signal?: AbortSignal): { promise: Promise<'timeout'>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    if (signal !== undefined) {
      onAbort = () => resolve('timeout');
      signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** Averages validation metrics over sites, weighted by their `val_n` (samples) when present. */
export function weightedMetrics(per: ReadonlyMap<string, Readonly<Record<string, number>>>): Record<string, number> {
  const sums = new Map<string, number>();
  let total = 0;
  for (const m of per.values()) {
    const w = m['val_n'] ?? 1;
    if (m['val_accuracy'] === undefined && m['val_loss'] === undefined) continue;
    total += w;
    for (const k of ['val_accuracy', 'val_loss'] as const) if (m[k] !== undefined) sums.set(k, (sums.get(k) ?? 0) + w * m[k]);
  }
  const out: Record<string, number> = {};
  if (total > 0) for (const [k, v] of sums) out[k.replace('val_', '')] = v / total;
  return out;
}

/**
 * FLARE's scatter-and-gather with FedAvg: each round sends the global model to every available site, streams
 * the updates that arrive before the round timeout into the aggregator, and — when at least `minClients`
 * arrived — applies the aggregate and checkpoints. A site that fails or disconnects stops counting at once
 * (no wait for the timeout); a result arriving after its round closed is ignored with a `late_result_ignored`
 * audit event; a round below `minClients` is retried `retries` times, then the job fails with
 * E_RUNTIME_MIN_CLIENTS. After the last round, sites validate the final model once.
 *
 * Each site's result carries the validation metrics of the global model it received, so round r's
 * accuracy (of the model after round r) is known when round r+1's results arrive.
 *
 * @returns the final global model.
 */
export async function runScatterGather(o: ScatterGatherOptions): Promise<FLModel> {
  const logger = o.logger ?? silentLogger;
  const audit = auditor(o.audit);
  let global = o.global;
  let previous: RoundRecord | undefined;
  if (o.startRound >= o.rounds) return global;
  for (let round = o.startRound; round < o.rounds; round++) {
    let attempt = 0;
    for (;;) {
      o.signal?.throwIfAborted();
      const started = performance.now();
      const sites = [...o.comms.sites()];
      const roundRef = audit({ action: 'round_started', job: o.job, msg: `round ${round} to ${sites.length} sites`, data: { round, attempt, sites } });
      logger.info('round started', { job: o.job, round, attempt, sites });
      o.aggregator.reset();
      const contributors: string[] = [];
      const bytes: Record<string, number> = {};
      const siteMetrics: Record<string, Record<string, number>> = {};
      const validation = new Map<string, Readonly<Record<string, number>>>();
      let closed = false;
      let pending = sites.length;
      let wake: () => void = () => undefined;
      const allIn = new Promise<void>((resolve) => {
        wake = resolve;
        if (pending === 0) resolve();
      });
      for (const site of sites) {
        const ref = audit({ action: 'task_sent', job: o.job, ref: roundRef, msg: `train round ${round} to ${site}`, data: { round, site } });
        o.comms
          .sendTask(site, { round, kind: 'train', model: global, ref })
          .then(
            async (out) => {
              bytes[site] = out.bytes;
              if (closed) {
                audit({ action: 'late_result_ignored', job: o.job, ref: out.ref, msg: `result of ${site} for round ${round} arrived after the round closed`, data: { round, site } });
                logger.warn('late result ignored', { job: o.job, round, site });
                await o.events?.emit('after-result', { site, job: o.job, round, accepted: false, reason: 'late' });
                return;
              }
              if (out.model === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', `${site} sent a train result without a model`);
              o.aggregator.accept(out.model, { from: site, round });
              contributors.push(site);
              validation.set(site, out.metrics);
              const own = Object.fromEntries(Object.entries(out.metrics).filter(([k]) => !k.startsWith('val_')));
              siteMetrics[site] = own;
              audit({ action: 'result_accepted', job: o.job, ref: out.ref, msg: `update of ${site} for round ${round}`, data: { round, site, steps: Number(out.model.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1), norm: l2norm(out.model) } });
              await o.events?.emit('after-result', { site, job: o.job, round, accepted: true });
            },
            async (e: unknown) => {
              const code = e instanceof Error && 'code' in e ? String((e as { code: unknown }).code) : 'E_RUNTIME_TASK_FAILED';
              audit({ action: closed ? 'late_failure_ignored' : 'result_missing', job: o.job, msg: `${site} sent no update for round ${round}: ${code}`, data: { round, site, code } });
              logger.warn('site sent no update', { job: o.job, round, site, code });
              await o.events?.emit('after-result', { site, job: o.job, round, accepted: false, reason: code });
            },
          )
          .catch((e: unknown) => {
            // A result that cannot be aggregated (wrong round, shape, kind) counts as missing.
            audit({ action: 'result_rejected', job: o.job, msg: `update of ${site} for round ${round} was rejected: ${e instanceof Error ? e.message.slice(0, 200) : 'invalid'}`, data: { round, site } });
          })
          .finally(() => {
            pending -= 1;
            if (pending === 0) wake();
          });
      }
      const t = timeout(o.roundTimeoutMs, o.signal);
      const how = await Promise.race([allIn.then(() => 'done' as const), t.promise]);
      t.cancel();
      closed = true;
      o.signal?.throwIfAborted();
      if (how === 'timeout') {
        audit({ action: 'round_timeout', job: o.job, ref: roundRef, msg: `round ${round} closed at its timeout with ${contributors.length} of ${sites.length} results`, data: { round, received: contributors.length } });
      }
      // Round r's results validate the model after round r-1: they are round r-1's metrics.
      const previousMetrics = weightedMetrics(validation);
      if (previous !== undefined) previous.metrics = previousMetrics;
      if (contributors.length >= o.minClients) {
        const aggregate = o.aggregator.result();
        global = aggregate.kind === 'diff' ? add(global, aggregate) : aggregate;
        global.kind = 'full';
        global.meta = { [META.CURRENT_ROUND]: round };
        const record: RoundRecord = { round, contributors: [...contributors].sort(), seconds: (performance.now() - started) / 1000, bytes, metrics: {}, site_metrics: siteMetrics };
        await o.checkpoint(round, global, record, previousMetrics);
        audit({ action: 'round_completed', job: o.job, ref: roundRef, msg: `round ${round} aggregated ${contributors.length} updates and checkpointed`, data: { round, contributors: record.contributors } });
        await o.events?.emit('after-round', { job: o.job, round, contributors: record.contributors });
        o.onRound?.(record);
        previous = record;
        break;
      }
      attempt += 1;
      audit({ action: 'round_below_min_clients', job: o.job, ref: roundRef, msg: `round ${round} got ${contributors.length} of min ${o.minClients} results (attempt ${attempt})`, data: { round, attempt, received: contributors.length } });
      if (attempt > (o.retries ?? 1)) {
        throw new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `round ${round} got ${contributors.length} results, min_clients is ${o.minClients}, after ${attempt} attempts`);
      }
    }
  }
  // One validation pass of the final model, so the last round has its accuracy too.
  const last = o.rounds - 1;
  const sites = [...o.comms.sites()];
  const validation = new Map<string, Readonly<Record<string, number>>>();
  const t = timeout(o.roundTimeoutMs, o.signal);
  await Promise.race([
    Promise.allSettled(
      sites.map(async (site) => {
        const out = await o.comms.sendTask(site, { round: o.rounds, kind: 'validate', model: global, ref: undefined });
        validation.set(site, out.metrics);
      }),
    ),
    t.promise,
  ]);
  t.cancel();
  const metrics = weightedMetrics(validation);
  if (previous !== undefined) previous.metrics = metrics;
  await o.finalMetrics?.(last, metrics);
  return global;
}
