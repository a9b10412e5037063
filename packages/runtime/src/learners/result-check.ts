import { LearnerError, isFloatDType, type FLModel, type Tensor } from '@flare/core';

/** How a refusal names where it happened: `learner 'pytorch' at site-1`. */
export function where(learner: string, site: string): string {
  return `learner '${learner}' at ${site}`;
}

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

function firstNonFinite(t: Tensor): number {
  if (!isFloatDType(t.dtype)) return -1;
  const d = t.data as Float32Array | Float64Array;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) return i;
  return -1;
}

/**
 * Refuses metrics that are not finite numbers (E_LEARNER_NOT_FINITE): a NaN accuracy would poison the job's
 * metrics as surely as a NaN weight poisons the model.
 */
export function checkMetrics(metrics: Readonly<Record<string, number | string>>, at: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(metrics)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new LearnerError('E_LEARNER_NOT_FINITE', `${at}: metric '${k}' is ${String(v)}`);
    out[k] = v;
  }
  return out;
}

/**
 * Checks a learner's update against the global model it was given: the same tensor names (none missing, none
 * extra), each with the same shape and dtype, and every float value finite; metrics finite too. Anything else
 * is refused before the update reaches a filter or leaves the site.
 *
 * @throws LearnerError E_LEARNER_RESULT_NAMES, E_LEARNER_RESULT_SHAPE or E_LEARNER_NOT_FINITE, naming the
 *   learner, the site and the first tensor at fault.
 */
export function checkUpdate(global: FLModel, update: FLModel, at: string): void {
  for (const name of update.params.keys()) {
    if (!global.params.has(name)) throw new LearnerError('E_LEARNER_RESULT_NAMES', `${at}: the result has a tensor '${name.slice(0, 100)}' the global model does not have`);
  }
  for (const [name, g] of global.params) {
    const t = update.params.get(name);
    if (t === undefined) throw new LearnerError('E_LEARNER_RESULT_NAMES', `${at}: the result lacks tensor '${name.slice(0, 100)}'`);
    if (t.dtype !== g.dtype || !sameShape(t, g)) {
      throw new LearnerError('E_LEARNER_RESULT_SHAPE', `${at}: tensor '${name.slice(0, 100)}' is ${t.dtype} [${t.shape.join(',')}], the global model's is ${g.dtype} [${g.shape.join(',')}]`);
    }
    const bad = firstNonFinite(t);
    if (bad >= 0) throw new LearnerError('E_LEARNER_NOT_FINITE', `${at}: tensor '${name.slice(0, 100)}' holds ${String(t.data[bad])} at element ${bad}`);
  }
  if (update.metrics !== undefined) checkMetrics(update.metrics, at);
}
