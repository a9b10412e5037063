import { FlareError, FlareRuntimeError, META, decodeModel, encodeModel, flareErrorFromCode, isFlareErrorCode, model, type FLModel, type JsonValue } from '@flare/core';
import type { RoundRecord } from '../server/job-store.js';
import { siteMetrics } from './metrics.js';
import type { SiteTaskContext, SiteTaskHandler, SiteWorkflow, TaskResult, Workflow, WorkflowContext } from './workflow.js';

/** The name meta.json uses. */
export const SCATTER_AND_GATHER = 'scatter_and_gather';

/** The code of a failure: a FlareError's own, E_RUNTIME_TASK_FAILED for anything else. */
export const codeOf = (e: unknown): string => (e instanceof FlareError ? e.code : 'E_RUNTIME_TASK_FAILED');

/**
 * A failure's message, bounded so that a job's reason can name several sites: what the site said, beside its code
 * (without the site's name in front, which the reason gives already).
 */
function briefOf(e: unknown, site: string): string {
  const said = e instanceof Error ? e.message : String(e);
  const m = said.startsWith(`${site}: `) ? said.slice(site.length + 2) : said;
  return m.length > 240 ? `${m.slice(0, 239)}…` : m;
}

/** Resolves after `ms` or when `signal` aborts, whichever comes first; `cancel` clears the timer. */
function deadline(ms: number, signal: AbortSignal): { promise: Promise<'timeout'>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    onAbort = () => resolve('timeout');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * Sends one task to each site and waits until every answer is in, or the timeout or abort, whichever comes
 * first. `onResult` runs for each answer before the round closed; `onFailure` for each failure, and with
 * `late` for an answer after it closed.
 */
export async function scatter(
  ctx: WorkflowContext,
  sites: readonly string[],
  timeoutMs: number,
  send: (site: string) => Promise<TaskResult>,
  onResult: (site: string, r: TaskResult) => void,
  onFailure: (site: string, e: unknown, late: boolean) => void,
): Promise<'done' | 'timeout'> {
  let closed = false;
  let pending = sites.length;
  let wake: () => void = () => undefined;
  const allIn = new Promise<'done'>((resolve) => {
    wake = () => resolve('done');
    if (pending === 0) resolve('done');
  });
  for (const site of sites) {
    send(site)
      .then(
        (r) => (closed ? onFailure(site, new FlareRuntimeError('E_RUNTIME_TIMEOUT', `${site} answered after round closed`), true) : onResult(site, r)),
        (e: unknown) => onFailure(site, e, closed),
      )
      .catch((e: unknown) => onFailure(site, e, closed))
      .finally(() => {
        pending -= 1;
        if (pending === 0) wake();
      });
  }
  const t = deadline(timeoutMs, ctx.signal);
  const how = await Promise.race([allIn, t.promise]);
  t.cancel();
  closed = true;
  return how;
}

/**
 * Runs scatter-and-gather's rounds from `ctx.start` to the job's last round and the final validation (see
 * {@link scatterAndGather}); resolves with the final global model. Workflows that train first (cross-site
 * evaluation) call it, then go on.
 */
export async function trainRounds(ctx: WorkflowContext): Promise<FLModel> {
  const def = ctx.definition;
  const timeoutMs = def.round_timeout_s * 1000;
  let global = ctx.start.global;
  for (let round = ctx.start.round; round < def.rounds; round++) {
    let attempt = 0;
    for (;;) {
      ctx.signal.throwIfAborted();
      const started = performance.now();
      const sites = ctx.sites();
      const roundRef = ctx.audit({ action: 'round_started', job: ctx.job, msg: `round ${round} to ${sites.length} sites`, data: { round, attempt, sites: [...sites] } });
      ctx.logger.info('round started', { job: ctx.job, round, attempt, sites });
      ctx.aggregation.begin(round, global);
      const contributors: string[] = [];
      const bytes: Record<string, number> = {};
      const own: Record<string, Record<string, number>> = {};
      const validation = new Map<string, Readonly<Record<string, number>>>();
      const failures: Record<string, string> = {};
      // Each failed site's own message (bounded), so the admin reads why beside the code (`flare admin status`).
      const messages: Record<string, string> = {};
      let aggregateMs = 0;
      const how = await scatter(
        ctx,
        sites,
        timeoutMs,
        (site) => ctx.send(site, { kind: 'train', round, model: global, ref: ctx.audit({ action: 'task_sent', job: ctx.job, ref: roundRef, msg: `train round ${round} to ${site}`, data: { round, site } }) }),
        (site, r) => {
          bytes[site] = r.bytes;
          try {
            const update = decodeModel(r.payload);
            const t0 = performance.now();
            const facts = ctx.aggregation.accept(update, { from: site });
            aggregateMs += performance.now() - t0;
            contributors.push(site);
            validation.set(site, r.metrics);
            own[site] = Object.fromEntries(Object.entries(r.metrics).filter(([k]) => !k.startsWith('val_')));
            ctx.audit({ action: 'result_accepted', job: ctx.job, ref: r.ref, msg: `update of ${site} for round ${round}`, data: { round, site, steps: Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1), ...facts } });
            void ctx.events.emit('after-result', { site, job: ctx.job, round, accepted: true }).catch(() => undefined);
          } catch (e) {
            // Only this update is refused (wrong tensors, round, kind, encryption): the round goes on.
            failures[site] = codeOf(e);
            messages[site] = briefOf(e, site);
            ctx.audit({ action: 'result_rejected', job: ctx.job, ref: r.ref, user: site, msg: `update of ${site} for round ${round} was refused: ${codeOf(e)}: ${e instanceof Error ? e.message.slice(0, 300) : 'invalid'}`, data: { round, site, code: codeOf(e) } });
            ctx.logger.warn('update refused', { job: ctx.job, round, site, code: codeOf(e) });
            void ctx.events.emit('after-result', { site, job: ctx.job, round, accepted: false, reason: codeOf(e) }).catch(() => undefined);
          }
        },
        (site, e, late) => {
          if (!late) {
            failures[site] = codeOf(e);
            messages[site] = briefOf(e, site);
          }
          ctx.audit({ action: late ? 'late_result_ignored' : 'result_missing', job: ctx.job, msg: `${site} sent no update for round ${round}: ${codeOf(e)}${e instanceof Error ? `: ${e.message.slice(0, 300)}` : ''}`, data: { round, site, code: codeOf(e) } });
          ctx.logger.warn(late ? 'late result ignored' : 'site sent no update', { job: ctx.job, round, site, code: codeOf(e) });
          void ctx.events.emit('after-result', { site, job: ctx.job, round, accepted: false, reason: late ? 'late' : codeOf(e) }).catch(() => undefined);
        },
      );
      ctx.signal.throwIfAborted();
      if (how === 'timeout') {
        ctx.audit({ action: 'round_timeout', job: ctx.job, ref: roundRef, msg: `round ${round} closed at its timeout with ${contributors.length} of ${sites.length} results`, data: { round, received: contributors.length } });
      }
      // Round r's results validate the model after round r - 1: they are round r - 1's metrics.
      if (round > 0 && validation.size > 0) {
        const m = siteMetrics(validation);
        await ctx.roundMetrics(round - 1, m.summary, m.perSite);
      }
      if (contributors.length >= def.min_clients) {
        const t0 = performance.now();
        const aggregate = ctx.aggregation.result();
        global = ctx.aggregation.advance(global, aggregate, { [META.CURRENT_ROUND]: round });
        aggregateMs += performance.now() - t0;
        const record: RoundRecord = {
          round,
          contributors: [...contributors].sort(),
          seconds: (performance.now() - started) / 1000,
          bytes,
          metrics: {},
          site_metrics: own,
          aggregate_seconds: aggregateMs / 1000,
          ...(ctx.aggregation.encrypted ? { encrypted: true } : {}),
        };
        await ctx.checkpoint(round, global, record);
        ctx.audit({ action: 'round_completed', job: ctx.job, ref: roundRef, msg: `round ${round} aggregated ${contributors.length} updates and checkpointed`, data: { round, contributors: record.contributors } });
        await ctx.events.emit('after-round', { job: ctx.job, round, contributors: record.contributors });
        break;
      }
      attempt += 1;
      ctx.audit({ action: 'round_below_min_clients', job: ctx.job, ref: roundRef, msg: `round ${round} got ${contributors.length} of min ${def.min_clients} results (attempt ${attempt})`, data: { round, attempt, received: contributors.length, failures } });
      if (attempt > def.retries) {
        const why = Object.entries(failures).map(([s, c]) => `${s}: ${c}${messages[s] === undefined || messages[s] === '' ? '' : ` (${messages[s]})`}`).join(', ');
        const codes = new Set(Object.values(failures));
        const [only] = codes;
        // Every site failed the same way (a model the learners cannot load, a budget spent everywhere): that
        // cause, with the sites' own code, is why the job failed.
        if (contributors.length === 0 && codes.size === 1 && only !== undefined && isFlareErrorCode(only) && only !== 'E_RUNTIME_DISCONNECTED') {
          throw flareErrorFromCode(only, `round ${round}: every site failed with ${only} (${why}), after ${attempt} attempts`);
        }
        throw new FlareRuntimeError('E_RUNTIME_MIN_CLIENTS', `round ${round} got ${contributors.length} results, min_clients is ${def.min_clients}, after ${attempt} attempts${why === '' ? '' : ` (${why})`}`);
      }
    }
  }
  // One validation pass of the final model, so the last round has its metrics too.
  const validation = new Map<string, Readonly<Record<string, number>>>();
  await scatter(
    ctx,
    ctx.sites(),
    timeoutMs,
    (site) => ctx.send(site, { kind: 'validate', round: def.rounds, model: global }),
    (site, r) => validation.set(site, r.metrics),
    (site, e) => ctx.logger.warn('final validation missing', { job: ctx.job, site, code: codeOf(e) }),
  );
  if (validation.size > 0) {
    const m = siteMetrics(validation);
    await ctx.roundMetrics(def.rounds - 1, m.summary, m.perSite);
  }
  return global;
}

/**
 * FLARE's scatter-and-gather: each round sends the global model to every available site (`train`), streams
 * the updates that arrive before the round timeout into the job's aggregation (each checked against the
 * global model first), and, when at least `min_clients` arrived, advances the global model and checkpoints. A
 * site that fails or disconnects stops counting at once; a result after its round closed is ignored with a
 * `late_result_ignored` audit event; a round below `min_clients` is re-run (the same round number) `retries`
 * times, then the job fails with E_RUNTIME_MIN_CLIENTS naming every site's own code. A site that rejoins
 * takes part from the next round. After the last round every site validates the final model (`validate`).
 *
 * Each site's train result carries the validation metrics of the global model it received, so round r's
 * metrics (of the model after round r) arrive with round r + 1.
 */
export const scatterAndGather: Workflow = {
  name: SCATTER_AND_GATHER,
  async run(ctx: WorkflowContext): Promise<void> {
    await trainRounds(ctx);
  },
};

/** Prefixes validation metrics with `val_` (the server tells them from a site's own numbers by it). */
export const asValidation = (v: Readonly<Record<string, number>>): Record<string, number> => Object.fromEntries(Object.entries(v).map(([k, x]) => [`val_${k}`, x]));

/** Validates the incoming global model, trains on it, and releases the update with the metrics through the result filters. */
const train: SiteTaskHandler = async (t: SiteTaskContext) => {
  const global = await t.filterIn(decodeModel(t.payload));
  const lctx = { site: t.site, job: t.job, round: t.round, signal: t.signal };
  const v = await t.learner.validate(global, lctx);
  const update = await t.learner.train(global, lctx);
  t.audit({ action: 'local_training_done', job: t.job, msg: `round ${t.round}: ${String(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? '?')} local steps`, data: { round: t.round, steps: Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 0) } });
  const out = await t.filterOut({ ...update, metrics: { ...update.metrics, ...asValidation(v) } });
  return { payload: encodeModel(out), metrics: out.metrics ?? {} };
};

/** Validates the model and releases the metrics (as a model with no tensors) through the result filters. */
const validate: SiteTaskHandler = async (t: SiteTaskContext) => {
  const global = await t.filterIn(decodeModel(t.payload));
  const v = await t.learner.validate(global, { site: t.site, job: t.job, round: t.round, signal: t.signal });
  const meta: Record<string, JsonValue> = { [META.CURRENT_ROUND]: t.round };
  const out: FLModel = await t.filterOut({ ...model(new Map(), 'full', meta), metrics: asValidation(v) });
  return { metrics: out.metrics ?? {} };
};

/** The site side of scatter-and-gather: `train` and `validate`. */
export const scatterAndGatherSite: SiteWorkflow = {
  name: SCATTER_AND_GATHER,
  initialModelTasks: ['train'],
  tasks: new Map([
    ['train', train],
    ['validate', validate],
  ]),
};
