import {
  FlareRuntimeError,
  META,
  add,
  l2norm,
  silentLogger,
  type Aggregator,
  type AuditHook,
  type FLModel,
  type JsonValue,
  type Logger,
} from '@flare/core';
import { HE_META_KEY, HeAggregator, heAddDiff, heModelStats, isEncryptedModel, type HeContext } from '@flare/filters-he';
import { auditor } from './audit-util.js';
import { EncryptionAwareAggregator } from './encryption-aware-aggregator.js';
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
  /**
   * The server's HE context (no secret key) for rounds whose updates are CKKS-encrypted: the global model is
   * advanced with `heAddDiff` on it. Default: the aggregator's own context when it is an HeAggregator.
   */
  readonly he?: HeContext;
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

function heContextOf(o: ScatterGatherOptions): HeContext | undefined {
  if (o.he !== undefined) return o.he;
  if (o.aggregator instanceof HeAggregator) return o.aggregator.context;
  if (o.aggregator instanceof EncryptionAwareAggregator) return o.aggregator.heContext;
  return undefined;
}

/**
 * The global model after a round: `global + aggregate` for a diff, the aggregate for a full model. Encrypted
 * aggregates are added with `heAddDiff` on the server context (core's `add` cannot add ciphertexts) and keep
 * their HE envelope (meta `flare.he`), without which sites cannot decrypt them; no plaintext arithmetic ever
 * touches a ciphertext. A plaintext aggregate cannot advance an encrypted global model.
 */
function nextGlobal(global: FLModel, aggregate: FLModel, round: number, o: ScatterGatherOptions): FLModel {
  const meta: Record<string, JsonValue> = { [META.CURRENT_ROUND]: round };
  if (isEncryptedModel(aggregate)) {
    const he = heContextOf(o);
    if (he === undefined) throw new FlareRuntimeError('E_RUNTIME_HE_UNAVAILABLE', `round ${round}: the aggregate is encrypted and this server has no HE context`);
    const next = aggregate.kind === 'diff' ? heAddDiff(he, global, aggregate) : aggregate;
    return { params: next.params, kind: 'full', meta: { ...meta, [HE_META_KEY]: next.meta[HE_META_KEY]! } };
  }
  if (isEncryptedModel(global) && aggregate.kind === 'diff') {
    throw new FlareRuntimeError('E_RUNTIME_ENCRYPTION_MIXED', `round ${round}: plaintext updates cannot advance an encrypted global model`);
  }
  const next = aggregate.kind === 'diff' ? add(global, aggregate) : aggregate;
  next.kind = 'full';
  next.meta = meta;
  return next;
}

/** What the audit says about an accepted update: its norm, or (encrypted) its ciphertext figures. */
function updateFacts(m: FLModel): Record<string, JsonValue> {
  const he = heModelStats(m);
  if (he === undefined) return { norm: l2norm(m) };
  // The server cannot read an encrypted update: no norm, only what the envelope says.
  return { encrypted: true, ciphertexts: he.ciphertexts, ciphertext_bytes: he.ciphertextBytes, encrypted_values: he.encryptedValues, plain_tensors: he.plainTensors };
}

/**
 * FLARE's scatter-and-gather with FedAvg: each round sends the global model to every available site, streams
 * the updates that arrive before the round timeout into the aggregator, and — when at least `minClients`
 * arrived — applies the aggregate and checkpoints. A site that fails or disconnects stops counting at once
 * (no wait for the timeout); a result arriving after its round closed is ignored with a `late_result_ignored`
 * audit event; a round below `minClients` is retried `retries` times, then the job fails with
 * E_RUNTIME_MIN_CLIENTS. After the last round, sites validate the final model once.
 *
 * Encrypted rounds (sites with `he-encrypt`): updates are aggregated without decryption (an HeAggregator, or
 * the server engine's encryption-aware aggregator), the global model is advanced with `heAddDiff` and stays
 * encrypted, and nothing reads the weights (the audit records ciphertext counts and bytes instead of norms).
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
      let aggregateMs = 0;
      let encrypted = false;
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
              const t0 = performance.now();
              o.aggregator.accept(out.model, { from: site, round });
              aggregateMs += performance.now() - t0;
              contributors.push(site);
              validation.set(site, out.metrics);
              const own = Object.fromEntries(Object.entries(out.metrics).filter(([k]) => !k.startsWith('val_')));
              siteMetrics[site] = own;
              const facts = updateFacts(out.model);
              if (facts['encrypted'] === true) encrypted = true;
              audit({ action: 'result_accepted', job: o.job, ref: out.ref, msg: `update of ${site} for round ${round}`, data: { round, site, steps: Number(out.model.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1), ...facts } });
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
            // A result that cannot be aggregated (wrong round, shape, kind, encryption) counts as missing.
            const code = e instanceof Error && 'code' in e ? String((e as { code: unknown }).code) : 'E_RUNTIME_TASK_FAILED';
            audit({ action: 'result_rejected', job: o.job, msg: `update of ${site} for round ${round} was rejected: ${code}: ${e instanceof Error ? e.message.slice(0, 200) : 'invalid'}`, data: { round, site, code } });
            logger.warn('update rejected', { job: o.job, round, site, code });
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
        const t0 = performance.now();
        const aggregate = o.aggregator.result();
        global = nextGlobal(global, aggregate, round, o);
        aggregateMs += performance.now() - t0;
        const record: RoundRecord = {
          round,
          contributors: [...contributors].sort(),
          seconds: (performance.now() - started) / 1000,
          bytes,
          metrics: {},
          site_metrics: siteMetrics,
          aggregate_seconds: aggregateMs / 1000,
          ...(encrypted ? { encrypted: true } : {}),
        };
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
