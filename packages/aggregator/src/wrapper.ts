// The part every aggregator that wraps another shares (internal): it is the inner aggregator as far as the
// round, the kind, the method name and the contributors go.

import { ModelError, type AcceptContext, type FLModel } from '@flare/core';
import type { ResultIntoOptions, RoundAggregator } from './types.js';

/**
 * `agg.resultInto(out, options)` when the aggregator has it; else its `result()` copied (or added) into `out`
 * (one transient result, for aggregators that have no in-place form).
 */
export function resultIntoOf(agg: RoundAggregator, out: FLModel, options: ResultIntoOptions = {}): Pick<FLModel, 'meta' | 'metrics'> {
  if (typeof agg.resultInto === 'function') return agg.resultInto(out, options);
  if (options.add === true && agg.kind !== 'diff') throw new TypeError('resultInto: only a diff result can be added to a model');
  const result = agg.result();
  const pairs: Array<[ArrayLike<number>, Float32Array | Float64Array]> = [];
  for (const [name, t] of result.params) {
    const o = out.params.get(name);
    if (o === undefined || o.data.length !== t.data.length) throw new ModelError('E_MODEL_MISMATCH', `resultInto: the target has no tensor "${name}" of ${t.data.length} values`);
    if (!(o.data instanceof Float32Array || o.data instanceof Float64Array) || t.data instanceof BigInt64Array) {
      throw new ModelError('E_MODEL_DTYPE', `resultInto: tensor "${name}" is not float; use result()`);
    }
    pairs.push([t.data, o.data]);
  }
  for (const [x, y] of pairs) {
    if (options.add === true) for (let i = 0; i < y.length; i++) y[i] = y[i]! + x[i]!;
    else for (let i = 0; i < y.length; i++) y[i] = x[i]!;
  }
  return result.metrics === undefined ? { meta: result.meta } : { meta: result.meta, metrics: result.metrics };
}

/** A RoundAggregator that delegates to `inner` whatever it does not change. */
export abstract class WrappingAggregator implements RoundAggregator {
  readonly inner: RoundAggregator;

  constructor(inner: RoundAggregator) {
    this.inner = inner;
  }

  get kind(): FLModel['kind'] {
    return this.inner.kind;
  }

  get method(): string {
    return this.inner.method;
  }

  get round(): number | undefined {
    return this.inner.round;
  }

  contributors(): string[] {
    return this.inner.contributors();
  }

  abstract accept(update: FLModel, ctx: AcceptContext): void;

  result(): FLModel {
    return this.inner.result();
  }

  resultInto(out: FLModel, options: ResultIntoOptions = {}): Pick<FLModel, 'meta' | 'metrics'> {
    return resultIntoOf(this.inner, out, options);
  }

  beginRound(round: number): void {
    this.inner.beginRound(round);
  }

  reset(round?: number): void {
    this.inner.reset(round);
  }
}
