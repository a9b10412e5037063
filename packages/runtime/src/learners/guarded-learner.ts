import { LearnerError, type FLModel, type Learner, type LearnerContext } from '@flare/core';
import { checkMetrics, checkUpdate, where } from './result-check.js';

/** Options of {@link guardLearner}. */
export interface GuardOptions {
  /** The learner's registered name and the site, for messages. */
  readonly name: string;
  readonly site: string;
  /** Time limits per task in milliseconds (default: none). */
  readonly trainMs?: number;
  readonly validateMs?: number;
}

function deadline<T>(work: Promise<T>, ms: number | undefined, what: () => string): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LearnerError('E_LEARNER_TIMEOUT', what())), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * Wraps an in-process learner (a plugin) with the checks an external learner's results get: the update has
 * the global model's tensor names, shapes and dtypes and finite values; metrics are finite; a task that does
 * not settle within its time limit fails with E_LEARNER_TIMEOUT. An in-process learner shares the site's
 * process, so a timeout cannot stop its work: run untrusted or unstable code as an external learner instead.
 */
export function guardLearner(inner: Learner, o: GuardOptions): Learner {
  const at = where(o.name, o.site);
  const guarded: Learner = {
    async train(global: FLModel, ctx: LearnerContext): Promise<FLModel> {
      const update = await deadline(inner.train(global, ctx), o.trainMs, () => `${at}: no update for round ${ctx.round} within ${(o.trainMs ?? 0) / 1000} s`);
      checkUpdate(global, update, at);
      return update;
    },
    async validate(global: FLModel, ctx: LearnerContext): Promise<Record<string, number>> {
      const metrics = await deadline(inner.validate(global, ctx), o.validateMs, () => `${at}: no metrics for round ${ctx.round} within ${(o.validateMs ?? 0) / 1000} s`);
      return checkMetrics(metrics, at);
    },
  };
  if (inner.close !== undefined) guarded.close = () => inner.close!();
  return guarded;
}
