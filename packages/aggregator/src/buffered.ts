import { AggregatorError, META, cloneModel, type AcceptContext, type FLModel } from '@flare/core';
import { reportAggregated, reportRefusal } from './audit.js';
import { excluder, type TensorExclusion } from './exclusion.js';
import { RoundGuard } from './round-guard.js';
import { checkAgainst, fixedLayout, layoutOf, type Layout } from './update-set.js';
import type { RoundAggregator, StreamingOptions, WeightedUpdate } from './types.js';
import { checkWeight } from './weights.js';

/** Options every buffering (robust) streaming aggregator accepts. */
export interface BufferedOptions extends StreamingOptions {
  readonly exclude?: TensorExclusion;
  /**
   * The model whose tensors (names, dtypes, shapes) every contribution must have, e.g. the global model
   * (`manifest` is the same without the values, and wins when both are given). Without either, the first
   * accepted contribution sets them.
   */
  readonly template?: FLModel;
}

/**
 * The streaming form of a robust aggregator (internal base): `accept` checks a contribution (round, site,
 * kind, weight = `ctx.weight` only, same tensors as the template or the first contribution, finite values)
 * and keeps a reference to it; `result` runs the method over the contributions sorted by site name, so the
 * result does not depend on arrival order. Memory: the n contributions (references, not copies: do not
 * modify a model after handing it over) plus the method's own.
 */
export abstract class BufferedAggregator implements RoundAggregator {
  abstract readonly method: string;
  readonly #guard: RoundGuard;
  readonly #exclude: TensorExclusion | undefined;
  readonly #excluded: (name: string) => boolean;
  readonly #template: Layout | undefined;
  readonly #audit: StreamingOptions['audit'];
  #layout: Layout | undefined;
  #entries: WeightedUpdate[] = [];
  #result: FLModel | undefined;

  constructor(options: BufferedOptions) {
    this.#guard = new RoundGuard(options.kind ?? 'diff', options.round);
    this.#exclude = options.exclude;
    this.#excluded = excluder(options.exclude);
    this.#template = fixedLayout(options, this.#excluded);
    this.#layout = this.#template;
    this.#audit = options.audit;
  }

  /** Runs the method over the contributions (sorted by site name). */
  protected abstract compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel;

  get kind(): FLModel['kind'] {
    return this.#guard.kind;
  }

  get round(): number | undefined {
    return this.#guard.round;
  }

  contributors(): string[] {
    return this.#guard.contributors();
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    reportRefusal(this.#audit, this.method, ctx?.from, () => {
      const admission = this.#guard.check(update, ctx);
      const weight = checkWeight(ctx.weight ?? 1, admission.from);
      const layout = this.#layout ?? layoutOf(update, this.#excluded);
      checkAgainst(update, layout, this.#excluded, admission.from);
      this.#entries.push({ model: update, weight, from: admission.from });
      this.#layout = layout;
      this.#guard.commit(admission);
    });
  }

  /**
   * The method's result over this round's contributions; closes the round (later contributions:
   * E_AGG_LATE). Computed once per round; later calls return copies.
   *
   * @throws AggregatorError E_AGG_EMPTY without contributions, E_AGG_ASSUMPTION when there are too few for
   *   the configured f.
   */
  result(): FLModel {
    if (this.#result !== undefined) return cloneModel(this.#result);
    if (this.#entries.length === 0) throw new AggregatorError('E_AGG_EMPTY', `no contribution was accepted for round ${this.round ?? '(unnumbered)'}`);
    this.#guard.close();
    const sorted = [...this.#entries].sort((a, b) => (a.from! < b.from! ? -1 : a.from! > b.from! ? 1 : 0));
    const out = this.compute(sorted, this.#exclude);
    if (this.round !== undefined) out.meta = { ...out.meta, [META.CURRENT_ROUND]: this.round };
    this.#result = out;
    reportAggregated(this.#audit, this.method, this.round, sorted.length);
    return cloneModel(out);
  }

  /** Drops the contributions and starts `round` (again, on a retry). */
  beginRound(round: number): void {
    this.#guard.begin(round);
    this.#clear();
  }

  /** Drops the contributions and starts `round`; without it, the next round after a result, else the same round again. */
  reset(round?: number): void {
    this.#guard.reset(round);
    this.#clear();
  }

  #clear(): void {
    this.#entries = [];
    this.#layout = this.#template;
    this.#result = undefined;
  }
}
