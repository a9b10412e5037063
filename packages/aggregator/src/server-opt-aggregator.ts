import { cloneModel, type AcceptContext, type FLModel, type Tensor } from '@flare/core';
import { reportAggregated } from './audit.js';
import type { TensorExclusion } from './exclusion.js';
import { FedAvgAggregator } from './fed-avg.js';
import { normBound } from './norm-bound.js';
import type { ServerOptimizer } from './server-optimizer.js';
import { numericData } from './tensors.js';
import type { RoundAggregator, StreamingOptions } from './types.js';

/** Options of {@link ServerOptAggregator}. */
export interface ServerOptAggregatorOptions extends StreamingOptions {
  /** The server optimizer (FedAvgM, FedAdagrad, FedAdam, FedYogi) and its state. */
  readonly optimizer: ServerOptimizer;
  /** The global model of the first round (not modified; the aggregator keeps its own copy). */
  readonly global: FLModel;
  /**
   * The aggregator whose result is the round's pseudo-gradient; default a FedAvgAggregator of `kind` whose
   * template is the global model (contributions with other tensors are refused at accept).
   */
  readonly inner?: RoundAggregator;
  /** Norm-bound every contribution before the inner aggregator sees it ({@link normBound}, the global model as reference). */
  readonly normBound?: { readonly maxNorm: number; readonly exclude?: TensorExclusion };
}

/**
 * A streaming aggregator that turns the round's aggregate into a server optimizer step (Reddi et al. 2021,
 * Algorithm 2): delta = aggregate (for `'diff'` contributions) or aggregate - global (for `'full'`), then
 * global <- optimizer.step(global, delta). `result()` returns the new global model (kind `'full'`) and
 * commits the step once per round; `reset()` starts the next round from it. The inner aggregator may be a
 * robust one (e.g. trimmed mean then FedAdam).
 *
 * Memory: the inner aggregator's, the global model, the new global model, and the optimizer state
 * (8 to 16 bytes per parameter).
 *
 * @example
 * ```ts
 * const agg = new ServerOptAggregator({ optimizer: new FedAdam({ eta: 0.01 }), global: initial, kind: 'diff' });
 * for (const [site, update] of results) agg.accept(update, { from: site });
 * const nextGlobal = agg.result();
 * save(nextGlobal, agg.optimizer.saveState());
 * agg.reset();
 * ```
 */
export class ServerOptAggregator implements RoundAggregator {
  readonly optimizer: ServerOptimizer;
  readonly inner: RoundAggregator;
  readonly #audit: StreamingOptions['audit'];
  #global: FLModel;
  #next: FLModel | undefined;
  readonly #bound: ServerOptAggregatorOptions['normBound'];

  constructor(options: ServerOptAggregatorOptions) {
    if (options.global?.kind !== 'full' || !(options.global.params instanceof Map)) throw new TypeError('"global" expected a model of kind "full"');
    this.optimizer = options.optimizer;
    this.inner =
      options.inner ??
      new FedAvgAggregator({
        kind: options.kind ?? 'diff',
        template: options.global,
        ...(options.round === undefined ? {} : { round: options.round }),
        ...(options.audit === undefined ? {} : { audit: options.audit }),
      });
    this.#audit = options.audit;
    this.#global = cloneModel(options.global);
    if (options.normBound !== undefined && !(options.normBound.maxNorm > 0 && Number.isFinite(options.normBound.maxNorm))) {
      throw new RangeError(`"normBound.maxNorm" expected a finite number > 0, got ${String(options.normBound.maxNorm)}`);
    }
    this.#bound = options.normBound;
  }

  get method(): string {
    return this.inner.method === 'fedavg' ? this.optimizer.name : `${this.inner.method}+${this.optimizer.name}`;
  }

  get kind(): FLModel['kind'] {
    return this.inner.kind;
  }

  get round(): number | undefined {
    return this.inner.round;
  }

  /** The global model this round's contributions were trained from (a copy). */
  get global(): FLModel {
    return cloneModel(this.#global);
  }

  contributors(): string[] {
    return this.inner.contributors();
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    const bound = this.#bound;
    if (bound === undefined || update.kind !== this.inner.kind) return this.inner.accept(update, ctx);
    const clipped = normBound(update, {
      maxNorm: bound.maxNorm,
      reference: this.#global,
      ...(bound.exclude === undefined ? {} : { exclude: bound.exclude }),
    });
    this.inner.accept(clipped, ctx);
  }

  /** The new global model (kind `'full'`); the optimizer step is taken on the first call of the round only. */
  result(): FLModel {
    if (this.#next === undefined) {
      const aggregate = this.inner.result();
      const delta = this.inner.kind === 'diff' ? aggregate : differenceFrom(aggregate, this.#global);
      const next = this.optimizer.step(this.#global, delta);
      next.meta = { ...next.meta, ...aggregate.meta };
      if (aggregate.metrics !== undefined) next.metrics = aggregate.metrics;
      this.#next = next;
      reportAggregated(this.#audit, this.method, this.round, this.inner.contributors().length);
    }
    return cloneModel(this.#next);
  }

  /**
   * Starts `round` from the new global model if `result()` was taken (the step is committed: the optimizer
   * has moved), else from the same one (a retry of a round that did not complete).
   */
  beginRound(round: number): void {
    this.#commit();
    this.inner.beginRound(round);
  }

  /** As {@link ServerOptAggregator.beginRound}; without a round, the inner aggregator's rule (next after a result, else the same). */
  reset(round?: number): void {
    this.#commit();
    this.inner.reset(round);
  }

  /** The global model of the round being aggregated: a view, not a copy (unlike `global`); do not modify it. */
  get currentGlobal(): FLModel {
    return this.#global;
  }

  #commit(): void {
    if (this.#next !== undefined) this.#global = this.#next;
    this.#next = undefined;
  }
}

/** aggregate - global per tensor, in float64 (the pseudo-gradient of 'full' contributions). */
function differenceFrom(aggregate: FLModel, global: FLModel): FLModel {
  const params = new Map<string, Tensor>();
  for (const [name, a] of aggregate.params) {
    const g = global.params.get(name);
    // Names and shapes are checked by the optimizer's step; a tensor unknown to the global model is passed on for it to refuse.
    if (g === undefined || g.data.length !== a.data.length) {
      params.set(name, a);
      continue;
    }
    const x = numericData(name, a);
    const y = numericData(name, g);
    const d = new Float64Array(x.length);
    for (let i = 0; i < d.length; i++) d[i] = x[i]! - y[i]!;
    params.set(name, { dtype: 'float64', shape: a.shape, data: d });
  }
  return { params, kind: 'diff', meta: {} };
}
