import {
  AggregatorError,
  META,
  ModelError,
  type AcceptContext,
  type DType,
  type FLModel,
  type FloatArray,
  type JsonValue,
  type Tensor,
} from '@flare/core';
import { reportAggregated, reportCapped, reportRefusal } from './audit.js';
import { ExactAccumulators, type AccumulatorSlot } from './accumulators.js';
import { ExactSum } from './exact-sum.js';
import { excluder, type TensorExclusion } from './exclusion.js';
import { RoundGuard } from './round-guard.js';
import { checkSize, fromFloat64, numericData, sameShape, shapeText } from './tensors.js';
import type { ResultIntoOptions, RoundAggregator, StreamingOptions, WeightedUpdate } from './types.js';
import { fixedLayout, type Layout } from './update-set.js';
import { contextOf, contributionWeight, type WeightRules } from './weights.js';

/** Options of {@link FedAvgAggregator} and {@link fedAvg}. */
export interface FedAvgOptions extends StreamingOptions {
  /** Tensors to leave out (FLARE's `exclude_vars`): names or regular expressions. */
  readonly exclude?: TensorExclusion;
  /** Weigh by meta NUM_STEPS_CURRENT_ROUND as well as by the aggregation weight (FLARE; default true). */
  readonly useSteps?: boolean;
  /**
   * Count at most this many local steps per contribution (default: no cap). A site reports its own
   * NUM_STEPS_CURRENT_ROUND: without a cap, one site claiming 1e9 steps outweighs all others. A capped
   * contribution is accepted with the cap as its step count and reported as a `weight_capped` audit event.
   */
  readonly maxSteps?: number;
  /**
   * A per-site step cap on top of `maxSteps`, e.g. the sample count each site declared when it was admitted
   * (return undefined for no cap of its own). Called once per contribution with the authenticated site name.
   */
  readonly siteMaxSteps?: (site: string) => number | undefined;
  /**
   * Aggregation weight per site (FLARE's `aggregation_weights`), used when `ctx.weight` is not given;
   * sites not listed weigh 1.
   */
  readonly aggregationWeights?: ReadonlyMap<string, number>;
  /**
   * The model whose tensors (names, dtypes, shapes) contributions may have, e.g. the global model: others
   * are refused (E_MODEL_MISMATCH). Without it, the first contribution carrying a tensor sets its shape.
   */
  readonly template?: FLModel;
}

/** One tensor's accumulator: the exact weighted sum as hi + lo (see exact-sum.ts) and the exact weight total. */
interface Slot {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly sums: AccumulatorSlot;
  readonly weight: ExactSum;
}

interface Planned {
  readonly name: string;
  readonly slot: Slot;
  readonly data: FloatArray;
  readonly fresh: boolean;
}

/**
 * Streaming ("in time") federated averaging with NVIDIA FLARE's semantics (InTimeAccumulateWeightedAggregator):
 * each contribution counts with weight = aggregation weight (`ctx.weight`, else `aggregationWeights`, default
 * 1) x its meta
 * NUM_STEPS_CURRENT_ROUND (default 1, counted as at most `maxSteps`); sums and divisors are kept per tensor name, so a tensor missing from
 * some sites is averaged over the sites that sent it. A contribution is refused (and leaves no trace) when
 * it is for another round (E_AGG_ROUND), from a site already counted (E_AGG_DUPLICATE), of the wrong kind
 * (E_AGG_KIND), badly weighted (E_AGG_WEIGHT), holds NaN or infinities (E_AGG_NONFINITE), does not match
 * the shapes already accumulated (E_MODEL_MISMATCH), or arrives after `result()` (E_AGG_LATE).
 *
 * Exact and order-independent: sums are accumulated in float64 as exact double-double pairs, so the result
 * is the same bits whatever order the sites arrive in (see the README's numerics note for the one
 * pathological exception). Result tensors are listed by name, in their input dtype (integer tensors are
 * rounded half to even; booleans are refused: exclude them).
 *
 * Memory: one accumulator, 16 bytes per parameter (the two float64 halves), whatever the number of sites;
 * contributions are not retained.
 *
 * @example
 * ```ts
 * const agg = new FedAvgAggregator({ kind: 'diff', round: 3, exclude: [/num_batches_tracked$/] });
 * agg.accept(updateA, { from: 'site-a', weight: 1, round: 3 });
 * agg.accept(updateB, { from: 'site-b', weight: 2, round: 3 });
 * const avgDiff = agg.result(); // kind 'diff'; apply it to the global model
 * agg.beginRound(4);
 * ```
 */
export class FedAvgAggregator implements RoundAggregator {
  readonly method: string = 'fedavg';
  readonly #guard: RoundGuard;
  readonly #excluded: (name: string) => boolean;
  readonly #rules: WeightRules;
  readonly #audit: StreamingOptions['audit'];
  readonly #siteWeights: ReadonlyMap<string, number> | undefined;
  readonly #template: Layout | undefined;
  readonly #slots = new Map<string, Slot>();
  readonly #acc = new ExactAccumulators();
  readonly #metrics = new Map<string, { readonly sum: ExactSum; readonly weight: ExactSum }>();

  constructor(options: FedAvgOptions = {}) {
    const maxSteps = options.maxSteps ?? Number.POSITIVE_INFINITY;
    if (!(maxSteps > 0)) throw new RangeError(`"maxSteps" expected a positive number, got ${String(options.maxSteps)}`);
    this.#guard = new RoundGuard(options.kind ?? 'diff', options.round);
    this.#excluded = excluder(options.exclude);
    if (options.siteMaxSteps !== undefined && typeof options.siteMaxSteps !== 'function') throw new TypeError('"siteMaxSteps" expected a function of the site name');
    this.#rules = { useSteps: options.useSteps ?? true, maxSteps, siteMaxSteps: options.siteMaxSteps };
    this.#audit = options.audit;
    if (options.aggregationWeights !== undefined && !(options.aggregationWeights instanceof Map)) {
      throw new TypeError('"aggregationWeights" expected a Map of site names to weights');
    }
    this.#siteWeights = options.aggregationWeights;
    this.#template = fixedLayout(options, this.#excluded);
  }

  get round(): number | undefined {
    return this.#guard.round;
  }

  /** The kind contributions must have (and the result has). */
  get kind(): FLModel['kind'] {
    return this.#guard.kind;
  }

  contributors(): string[] {
    return this.#guard.contributors();
  }

  /** Bytes of this round's accumulators (for memory reports): 16 per accumulated parameter. */
  get accumulatorBytes(): number {
    let n = 0;
    for (const s of this.#slots.values()) n += 16 * s.sums.length;
    return n;
  }

  /** Bytes the accumulators hold across rounds (their memory is reused, never given back): at least `accumulatorBytes`. */
  get reservedBytes(): number {
    return this.#acc.byteLength;
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    reportRefusal(this.#audit, this.method, ctx?.from, () => this.#accept(update, ctx));
  }

  #accept(update: FLModel, ctx: AcceptContext): void {
    const admission = this.#guard.check(update, ctx);
    const from = admission.from;
    const { weight: w, capped } = contributionWeight(update, ctx.weight ?? this.#siteWeights?.get(from), from, this.#rules);
    if (!(update.params instanceof Map)) throw new TypeError('"update.params" expected a Map of tensors');

    // Validate everything before writing anything: a refused contribution must leave the sums untouched, and
    // give back the accumulators it reserved for tensors new this round.
    const mark = this.#acc.mark();
    try {
      const plan: Planned[] = [];
      for (const [name, t] of update.params) {
        if (this.#excluded(name)) continue;
        checkSize(name, t);
        const existing = this.#slots.get(name);
        if (this.#template !== undefined && !this.#template.has(name)) {
          throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" from "${from}" is not in the model`);
        }
        const want = existing ?? this.#template?.get(name);
        if (want !== undefined && (want.dtype !== t.dtype || !sameShape(want.shape, t.shape))) {
          throw new ModelError(
            'E_MODEL_MISMATCH',
            `tensor "${name}" from "${from}" is ${t.dtype} ${shapeText(t.shape)}; expected ${want.dtype} ${shapeText(want.shape)}`,
          );
        }
        const data = numericData(name, t);
        const slot = existing ?? this.#newSlot(t);
        if (!Number.isFinite(slot.weight.value + w)) throw new AggregatorError('E_AGG_WEIGHT', `total weight of tensor "${name}" overflows`);
        plan.push({ name, slot, data, fresh: existing === undefined });
      }

      for (let k = 0; k < plan.length; k++) {
        const { name, slot, data } = plan[k]!;
        const bad = this.#acc.add(slot.sums, data, w);
        if (bad >= 0) {
          // Subtracting what was added restores the exact sums (TwoSum is error-free both ways).
          this.#acc.add(slot.sums, data, -w, bad);
          for (let j = k - 1; j >= 0; j--) {
            const p = plan[j]!;
            if (!p.fresh) this.#acc.add(p.slot.sums, p.data, -w);
          }
          throw new AggregatorError('E_AGG_NONFINITE', `tensor "${name}" from "${from}" has a non-finite value near index ${bad} (or overflows when weighted)`);
        }
      }

      for (const { name, slot, fresh } of plan) {
        if (fresh) this.#slots.set(name, slot);
        slot.weight.add(w);
      }
    } catch (e) {
      this.#acc.release(mark);
      throw e;
    }
    const metrics = update.metrics;
    if (metrics !== undefined && metrics !== null && typeof metrics === 'object') {
      for (const [key, value] of Object.entries(metrics)) {
        // A diverged local metric (NaN loss) is the site's business: it is left out, not a reason to refuse.
        if (typeof value !== 'number' || !Number.isFinite(value) || !Number.isFinite(value * w)) continue;
        let m = this.#metrics.get(key);
        if (m === undefined) this.#metrics.set(key, (m = { sum: new ExactSum(), weight: new ExactSum() }));
        m.sum.add(value * w);
        m.weight.add(w);
      }
    }
    this.#guard.commit(admission);
    if (capped !== undefined) reportCapped(this.#audit, this.method, from, capped.claimed, capped.cap);
  }

  #newSlot(t: Tensor): Slot {
    return { dtype: t.dtype, shape: Object.freeze([...t.shape]), sums: this.#acc.slot(t.data.length), weight: new ExactSum() };
  }

  /**
   * The weighted average of the round's contributions (kind as configured), tensors sorted by name, meta
   * `current_round` when known, metrics averaged with the same weights. Closes the round: later
   * contributions are refused (E_AGG_LATE) until `reset()`. Calling it again returns an equal model.
   *
   * @throws AggregatorError E_AGG_EMPTY when no contribution was accepted.
   */
  result(): FLModel {
    if (this.#guard.count === 0) throw new AggregatorError('E_AGG_EMPTY', `no contribution was accepted for round ${this.round ?? '(unnumbered)'}`);
    this.#guard.close();
    const params = new Map<string, Tensor>();
    for (const name of [...this.#slots.keys()].sort()) {
      const slot = this.#slots.get(name)!;
      params.set(name, averageOf(slot, this.#acc));
    }
    const { meta, metrics } = this.#summary();
    const out: FLModel = { params, kind: this.#guard.kind, meta };
    if (metrics !== undefined) out.metrics = metrics;
    reportAggregated(this.#audit, this.method, this.round, this.#guard.count);
    return out;
  }

  /**
   * The round's average written into `out` instead of new tensors: `out`'s tensor of each aggregated name
   * (float32 or float64 data of the same length) is set to the average, or, with `add`, has the average added
   * (`global += average diff`, rounded once). Tensors the round did not aggregate are left as they are. With
   * `out` the global model (or a buffer reused round after round), a round allocates nothing model-sized.
   * Closes the round as `result()` does. Returns the result's meta and metrics.
   *
   * @throws AggregatorError E_AGG_EMPTY when no contribution was accepted; ModelError E_MODEL_MISMATCH when
   *   `out` lacks an aggregated tensor or its length differs, E_MODEL_DTYPE when that tensor is not float
   *   (use `result()` for integer tensors). Nothing is written when it throws.
   */
  resultInto(out: FLModel, { add = false }: ResultIntoOptions = {}): Pick<FLModel, 'meta' | 'metrics'> {
    if (add && this.kind !== 'diff') throw new TypeError('resultInto: only a diff average can be added to a model');
    if (this.#guard.count === 0) throw new AggregatorError('E_AGG_EMPTY', `no contribution was accepted for round ${this.round ?? '(unnumbered)'}`);
    const targets: Array<[Slot, FloatArray]> = [];
    for (const [name, slot] of this.#slots) {
      const t = out.params.get(name);
      if (t === undefined || t.data.length !== slot.sums.length) throw new ModelError('E_MODEL_MISMATCH', `resultInto: the target has no tensor "${name}" of ${slot.sums.length} values`);
      if (!(t.data instanceof Float32Array || t.data instanceof Float64Array)) throw new ModelError('E_MODEL_DTYPE', `resultInto: tensor "${name}" of the target is ${t.dtype}; use result() for non-float tensors`);
      targets.push([slot, t.data]);
    }
    this.#guard.close();
    for (const [slot, y] of targets) {
      const { hi, lo } = this.#acc.sums(slot.sums);
      const total = slot.weight.value;
      if (add) for (let i = 0; i < y.length; i++) y[i] = y[i]! + (hi[i]! + lo[i]!) / total;
      else for (let i = 0; i < y.length; i++) y[i] = (hi[i]! + lo[i]!) / total;
    }
    const { meta, metrics } = this.#summary();
    reportAggregated(this.#audit, this.method, this.round, this.#guard.count);
    return metrics === undefined ? { meta } : { meta, metrics };
  }

  #summary(): Pick<FLModel, 'meta' | 'metrics'> {
    const meta: Record<string, JsonValue> = {};
    if (this.round !== undefined) meta[META.CURRENT_ROUND] = this.round;
    if (this.#metrics.size === 0) return { meta };
    return { meta, metrics: Object.fromEntries([...this.#metrics].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, m]) => [k, m.sum.value / m.weight.value])) };
  }

  /** Drops the sums and starts `round` (again, on a retry: its contributions are accepted anew). The accumulators' memory is reused. */
  beginRound(round: number): void {
    this.#guard.begin(round);
    this.#clear();
  }

  /** Drops the sums and starts `round`; without it, the next round after `result()`, else the same round again (a retry). */
  reset(round?: number): void {
    this.#guard.reset(round);
    this.#clear();
  }

  #clear(): void {
    this.#slots.clear();
    this.#metrics.clear();
    this.#acc.reset();
  }
}

/** fl(hi + lo) is the correctly rounded exact sum whatever the split between hi and lo; divided once by the weight. */
function averageOf(slot: Slot, acc: ExactAccumulators): Tensor {
  const { hi, lo } = acc.sums(slot.sums);
  const { dtype, shape } = slot;
  const total = slot.weight.value;
  const n = hi.length;
  if (dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16') {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (hi[i]! + lo[i]!) / total;
    return { dtype, shape, data: out };
  }
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (hi[i]! + lo[i]!) / total;
  return { dtype, shape, data: dtype === 'float64' ? out : fromFloat64(dtype, out) };
}

/**
 * Federated averaging of a list of contributions with FLARE's semantics (see {@link FedAvgAggregator}):
 * weight = `weight` (default 1) x meta NUM_STEPS_CURRENT_ROUND (default 1), per-tensor divisors, optional
 * exclusions. All contributions must have the same kind (`opts.kind`, default the first one's).
 * The result does not depend on the order of `updates`.
 *
 * @throws AggregatorError E_AGG_EMPTY for an empty list, and every refusal code of {@link FedAvgAggregator}.
 * @example
 * ```ts
 * const avg = fedAvg([{ model: a, weight: 10 }, { model: b, weight: 30 }]);
 * ```
 */
export function fedAvg(updates: readonly WeightedUpdate[], opts: FedAvgOptions = {}): FLModel {
  const first = updates[0];
  if (first === undefined) throw new AggregatorError('E_AGG_EMPTY', 'fedAvg: no updates');
  const agg = new FedAvgAggregator({ ...opts, kind: opts.kind ?? first.model.kind });
  updates.forEach((u, i) => agg.accept(u.model, contextOf(u, i)));
  return agg.result();
}
