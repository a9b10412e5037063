import { META, cloneModel, type AcceptContext, type AuditHook, type FLModel } from '@flare/core';
import { reportRefusal } from './audit.js';
import { excluder, type TensorExclusion } from './exclusion.js';
import { clipUpdate, measureUpdate } from './norm-bound.js';
import type { ResultIntoOptions, RoundAggregator } from './types.js';
import { WrappingAggregator, resultIntoOf } from './wrapper.js';

/** The multiple of the median update norm (and step count) the secure default allows. */
export const DEFAULT_NORM_MULTIPLE = 3;

/** Options of {@link AdaptiveNormBoundAggregator}. */
export interface AdaptiveNormBoundOptions {
  /** Each update's L2 norm is bounded by this multiple of the median update norm (default 3, at least 1). */
  readonly multiple?: number;
  /**
   * Each update's NUM_STEPS_CURRENT_ROUND is counted as at most this multiple of the median step count
   * (default: `multiple`; `Infinity` turns the step cap off).
   */
  readonly stepsMultiple?: number;
  /**
   * The norm bound of the first round, which has no median to go by yet. Without it the first round is
   * buffered (see the class notes); with it, every round streams.
   */
  readonly initialMaxNorm?: number;
  /** For `'full'` contributions: the round's global model, or a function returning it (read once per round). */
  readonly reference?: FLModel | (() => FLModel);
  /** Tensors neither counted in the norm nor scaled. */
  readonly exclude?: TensorExclusion;
  /** Receives `norm_bound` (per round: the bound, how many were clipped) and `weight_capped` events. */
  readonly audit?: AuditHook;
}

/** The medians of the last completed round, from which the next round's bounds are derived. */
export interface AdaptiveBoundHistory {
  /** The lower median of the accepted updates' norms (before clipping). */
  readonly medianNorm: number;
  /** The lower median of the step counts they claimed, when any claimed one. */
  readonly medianSteps?: number | undefined;
}

/** The lower median (the middle value, or the smaller of the two middle values): an honest majority fixes it. */
function lowerMedian(values: readonly number[]): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[(sorted.length - 1) >> 1]!;
}

function positiveMultiple(name: string, v: number | undefined, fallback: number): number {
  const m = v ?? fallback;
  if (typeof m !== 'number' || Number.isNaN(m) || m < 1) throw new RangeError(`AdaptiveNormBoundAggregator: "${name}" expected a number >= 1, got ${String(v)}`);
  return m;
}

function stepsOf(update: FLModel): number | undefined {
  const s: unknown = update.meta?.[META.NUM_STEPS_CURRENT_ROUND];
  return typeof s === 'number' && Number.isFinite(s) && s > 0 ? s : undefined;
}

interface Held {
  readonly update: FLModel;
  readonly ctx: AcceptContext;
  readonly norm: number;
}

/**
 * The secure default around any streaming aggregator: every update is clipped to `multiple` (default 3) times
 * the median update norm, and its NUM_STEPS_CURRENT_ROUND counted as at most `stepsMultiple` times the median
 * step count, so that one site can neither replace the model with a large update nor outweigh the others by
 * claiming a huge step count, while honest updates (near the median) pass untouched.
 *
 * Which median: the previous completed round's, so that every round streams (the inner aggregator keeps its
 * own memory; this wrapper keeps two numbers per contribution). The first round has no previous round: with
 * `initialMaxNorm` it streams with that bound (steps uncapped); without it, the wrapper hands each update to
 * the inner aggregator (which refuses what it refuses, at once, with its code), keeps a copy of each
 * accepted update, and at `result()` restarts the inner aggregator's round and replays the copies clipped to
 * that round's own medians, when any needs clipping. So the first round costs one model copy per site and,
 * when an update is clipped, a second pass; later rounds cost one norm computation per update.
 *
 * The medians are lower medians over the accepted contributions, so they hold while fewer than half the
 * contributors are faulty; a majority of faulty sites can raise them. Norm bounding limits how far each
 * update moves the model, not its direction: combine with a robust inner aggregator for that.
 *
 * @example
 * ```ts
 * const agg = new AdaptiveNormBoundAggregator(new FedAvgAggregator({ kind: 'diff' }), { multiple: 3 });
 * ```
 */
export class AdaptiveNormBoundAggregator extends WrappingAggregator {
  readonly multiple: number;
  readonly stepsMultiple: number;
  readonly #initial: number | undefined;
  readonly #reference: AdaptiveNormBoundOptions['reference'];
  readonly #excluded: (name: string) => boolean;
  readonly #audit: AuditHook | undefined;
  #history: AdaptiveBoundHistory | undefined;
  #roundReference: FLModel | undefined;
  #norms: number[] = [];
  #steps: number[] = [];
  #held: Held[] | undefined;
  #clipped = 0;
  #capped = 0;
  #done = false;
  /** The first round's bound, once `result()` has taken it from the round's own median. */
  #firstBound: number | undefined;

  constructor(inner: RoundAggregator, options: AdaptiveNormBoundOptions = {}) {
    super(inner);
    this.multiple = positiveMultiple('multiple', options.multiple, DEFAULT_NORM_MULTIPLE);
    this.stepsMultiple = positiveMultiple('stepsMultiple', options.stepsMultiple, this.multiple);
    if (options.initialMaxNorm !== undefined && !(options.initialMaxNorm > 0 && Number.isFinite(options.initialMaxNorm))) {
      throw new RangeError(`AdaptiveNormBoundAggregator: "initialMaxNorm" expected a finite number > 0, got ${String(options.initialMaxNorm)}`);
    }
    if (inner.kind === 'full' && options.reference === undefined) throw new TypeError('AdaptiveNormBoundAggregator: full contributions need the global model as "reference"');
    this.#initial = options.initialMaxNorm;
    this.#reference = options.reference;
    this.#excluded = excluder(options.exclude);
    this.#audit = options.audit;
  }

  /** The medians the current round's bounds come from (those of the last completed round), if any. */
  get history(): AdaptiveBoundHistory | undefined {
    return this.#history;
  }

  /** Restores the medians of the last completed round (from a checkpoint, to resume a job bit for bit). */
  restoreHistory(history: AdaptiveBoundHistory | undefined): void {
    if (history !== undefined) {
      const { medianNorm, medianSteps } = history;
      if (!(medianNorm >= 0 && Number.isFinite(medianNorm)) || (medianSteps !== undefined && !(medianSteps > 0 && Number.isFinite(medianSteps)))) {
        throw new RangeError('AdaptiveNormBoundAggregator: a history needs a finite medianNorm >= 0 and, if given, a finite medianSteps > 0');
      }
    }
    this.#history = history;
  }

  /** The norm bound in force this round (undefined in a buffered first round). */
  get maxNorm(): number | undefined {
    return this.#history === undefined ? this.#initial : this.multiple * this.#history.medianNorm;
  }

  /** The step cap in force this round (undefined when there is none). */
  get maxSteps(): number | undefined {
    const s = this.#history?.medianSteps;
    return s === undefined || !Number.isFinite(this.stepsMultiple) ? undefined : this.stepsMultiple * s;
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    // A contribution of the wrong kind goes straight to the inner aggregator, which refuses it (E_AGG_KIND).
    if (update?.kind !== this.inner.kind) return this.inner.accept(update, ctx);
    const measured = reportRefusal(this.#audit, this.method, ctx?.from, () => measureUpdate(update, this.#referenceNow(), this.#excluded));
    const maxNorm = this.maxNorm;
    const claimed = stepsOf(update);
    if (maxNorm === undefined) {
      this.inner.accept(update, ctx);
      (this.#held ??= []).push({ update: cloneModel(update), ctx: { ...ctx }, norm: measured.norm });
    } else {
      const clipped = this.#capSteps(clipUpdate(update, measured, maxNorm), claimed, this.maxSteps, ctx.from);
      this.inner.accept(clipped, ctx);
      if (measured.norm > maxNorm) this.#clipped++;
    }
    this.#norms.push(measured.norm);
    if (claimed !== undefined) this.#steps.push(claimed);
  }

  /**
   * The inner aggregator's result, over clipped contributions. In a buffered first round, this is where the
   * round's medians are taken and the copies replayed clipped. Records this round's medians for the next.
   */
  override result(): FLModel {
    return this.#finish(() => this.inner.result());
  }

  /** {@link AdaptiveNormBoundAggregator.result} written into `out` (see RoundAggregator.resultInto). */
  override resultInto(out: FLModel, options: ResultIntoOptions = {}): Pick<FLModel, 'meta' | 'metrics'> {
    return this.#finish(() => resultIntoOf(this.inner, out, options));
  }

  /** Around taking the inner result: the first round's replay before, this round's medians after (once per round). */
  #finish<T>(take: () => T): T {
    if (!this.#done) {
      const held = this.#held;
      if (held !== undefined && held.length > 0) this.#replay(held);
      this.#held = undefined;
    }
    const out = take();
    if (!this.#done) {
      this.#done = true;
      const medianSteps = this.#steps.length === 0 ? undefined : lowerMedian(this.#steps);
      const bound = this.maxNorm ?? this.#firstBound;
      this.#audit?.({
        action: 'norm_bound',
        msg: `${this.method}: ${this.#clipped} of ${this.#norms.length} update(s) clipped, ${this.#capped} step count(s) capped`,
        data: { method: this.method, round: this.round ?? null, bound: bound ?? null, clipped: this.#clipped, capped: this.#capped, contributions: this.#norms.length },
      });
      this.#history = { medianNorm: lowerMedian(this.#norms), medianSteps };
    }
    return out;
  }

  override beginRound(round: number): void {
    this.#clear();
    super.beginRound(round);
  }

  override reset(round?: number): void {
    this.#clear();
    super.reset(round);
  }

  #clear(): void {
    this.#norms = [];
    this.#steps = [];
    this.#held = undefined;
    this.#roundReference = undefined;
    this.#clipped = 0;
    this.#capped = 0;
    this.#done = false;
    this.#firstBound = undefined;
  }

  #referenceNow(): FLModel | undefined {
    if (this.inner.kind !== 'full') return undefined;
    const r = this.#reference;
    this.#roundReference ??= typeof r === 'function' ? r() : r;
    return this.#roundReference;
  }

  #capSteps(update: FLModel, claimed: number | undefined, cap: number | undefined, from: string): FLModel {
    if (claimed === undefined || cap === undefined || claimed <= cap) return update;
    this.#capped++;
    this.#audit?.({ action: 'weight_capped', msg: `${this.method} counted ${from} with ${cap} local steps; it claimed ${claimed}`, data: { method: this.method, from, claimed, cap } });
    const out: FLModel = { params: update.params, kind: update.kind, meta: { ...update.meta, [META.NUM_STEPS_CURRENT_ROUND]: cap } };
    if (update.metrics !== undefined) out.metrics = update.metrics;
    return out;
  }

  /** First round: bounds from this round's own medians; replays the held copies when any must change. */
  #replay(held: readonly Held[]): void {
    const maxNorm = this.multiple * lowerMedian(held.map((h) => h.norm));
    this.#firstBound = maxNorm;
    const steps = held.map((h) => stepsOf(h.update)).filter((s): s is number => s !== undefined);
    const maxSteps = steps.length === 0 || !Number.isFinite(this.stepsMultiple) ? undefined : this.stepsMultiple * lowerMedian(steps);
    const changes = held.some((h) => h.norm > maxNorm || (maxSteps !== undefined && (stepsOf(h.update) ?? 0) > maxSteps));
    if (!changes) return;
    const round = this.inner.round;
    if (round === undefined) this.inner.reset();
    else this.inner.beginRound(round);
    const reference = this.#referenceNow();
    for (const h of held) {
      const measured = measureUpdate(h.update, reference, this.#excluded);
      if (h.norm > maxNorm) this.#clipped++;
      this.inner.accept(this.#capSteps(clipUpdate(h.update, measured, maxNorm), stepsOf(h.update), maxSteps, h.ctx.from), h.ctx);
    }
  }
}
