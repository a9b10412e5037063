import {
  FlareError,
  HeError,
  META,
  tensor,
  type AcceptContext,
  type Aggregator,
  type FLModel,
  type JsonValue,
  type Tensor,
} from '@flare/core';
import { engineOf, type HeContext } from './context.js';
import { toDtype } from './dtype.js';
import { ciphertextName, digest, envelopeJson, HE_META_KEY, openEncryptedModel, samePacking, type HeEnvelope } from './envelope.js';
import type { CkksEngine, Ct } from './seal/engine.js';
import type { CheckedCiphertext, WireLevel } from './seal/wire.js';
import { checkCiphertexts, checkContext } from './validate.js';

/** Options of {@link HeAggregator}. */
export interface HeAggregatorOptions {
  /** The server context (no secret key). */
  readonly context: HeContext;
  /**
   * Accept a context that holds the secret key. Default false: the server side refuses one
   * (E_HE_SECRET_KEY_PRESENT), so a client kit copied to the server is caught at start.
   */
  readonly allowSecretKey?: boolean;
  /** Dispose the context when the aggregator is disposed (default false: the caller owns it). */
  readonly disposeContext?: boolean;
  /** Weigh by meta NUM_STEPS_CURRENT_ROUND as well as by the aggregation weight (FLARE; default true). */
  readonly useSteps?: boolean;
  /** Refuse contributions reporting more local steps than this (E_HE_WEIGHT; default: no cap). */
  readonly maxSteps?: number;
  /** Aggregation weight per site (FLARE's `aggregation_weights`) when `ctx.weight` is not given; default 1. */
  readonly aggregationWeights?: ReadonlyMap<string, number>;
}

/** In "scale" mode (one rescaling prime), weights are encoded at 2^30: 2^-31 relative precision per weight. */
const SCALE_MODE_WEIGHT_BITS = 30;
/**
 * SEAL's WebAssembly memory is 32-bit (at most 4 GiB); the accumulators may take 3 GiB of it, so that a model
 * too large for one aggregator is refused up front instead of failing an allocation halfway through a round.
 */
const ACCUMULATOR_BUDGET_BYTES = 3 * 2 ** 30;

interface Layout {
  readonly envelope: HeEnvelope;
  readonly kind: FLModel['kind'];
  readonly plain: ReadonlyMap<string, { readonly dtype: Tensor['dtype']; readonly shape: readonly number[] }>;
  readonly round: number | undefined;
}

/**
 * Encrypted FedAvg on the server: sums the sites' ciphertexts, weighting each by a plaintext multiplication
 * (sites need not pre-weight), and divides by the total weight, without ever holding a secret key.
 *
 * Arithmetic (defaults, two rescaling primes q1, q2): each update is multiplied by its weight, relative to
 * the first accepted weight and encoded at scale q2, and added to the running sum; `result()` rescales (the
 * scale returns to 2^40 exactly), multiplies by 1 / total weight encoded at q1, rescales again (2^40
 * exactly), and switches to the last level, so every aggregate has the same level and scale and encrypted
 * global models can be added across rounds (`heAddDiff`). With one rescaling prime (FLARE's
 * [60, 40, 40]) there is no level for the division: weights are encoded at 2^30 and the division is exact,
 * made by setting the scale to 2^70 x total weight; such aggregates differ in scale from round to round.
 *
 * Plaintext tensors (left out of encryption by the sites) are averaged in float64 with the same weights.
 * Memory: one ciphertext accumulator per 4,096 values in SEAL's heap (about 393 KB each with the defaults,
 * so ~96 MB per million parameters), plus one validated update at a time. SEAL's WebAssembly heap is 32-bit:
 * accumulators may use 3 GiB of it (about 32 million parameters with the defaults); a larger model is refused
 * at its first update (E_HE_CAPACITY).
 *
 * Refusals leave the round untouched: everything about an update is checked before any accumulator changes.
 *
 * @example
 * ```ts
 * const agg = new HeAggregator({ context: server });
 * for (const [site, update] of updates) agg.accept(update, { from: site, weight: 1 });
 * const encryptedMean = agg.result();
 * ```
 */
export class HeAggregator implements Aggregator {
  readonly #context: HeContext;
  readonly #engine: CkksEngine;
  readonly #rescaleMode: boolean;
  readonly #weightScale: number;
  readonly #maxWeight: number;
  readonly #disposeContext: boolean;
  readonly #useSteps: boolean;
  readonly #maxSteps: number;
  readonly #siteWeights: ReadonlyMap<string, number> | undefined;
  #metrics = new Map<string, number>();
  #layout: Layout | undefined;
  #acc: Ct[] = [];
  #plain = new Map<string, Float64Array>();
  #seen = new Set<string>();
  #firstWeight = 0;
  #normalizedTotal = 0;
  #rawTotal = 0;
  #broken = false;
  #disposed = false;

  constructor(options: HeAggregatorOptions) {
    const { context, allowSecretKey = false, disposeContext = false, useSteps = true, maxSteps = Number.POSITIVE_INFINITY, aggregationWeights } = options;
    if (!(maxSteps > 0)) throw new RangeError(`"maxSteps" expected a positive number, got ${String(maxSteps)}`);
    this.#useSteps = useSteps;
    this.#maxSteps = maxSteps;
    this.#siteWeights = aggregationWeights;
    this.#engine = engineOf(context);
    if (context.hasSecretKey && !allowSecretKey) {
      throw new HeError('E_HE_SECRET_KEY_PRESENT', 'the aggregator was given a context with the secret key; the server must hold only the server context');
    }
    this.#context = context;
    this.#disposeContext = disposeContext;
    const levels = this.#engine.shape.levels;
    // Two or more rescaling primes: weights at the top level's last prime, division at the next one.
    this.#rescaleMode = levels.length >= 3;
    const top = levels[0]!;
    this.#weightScale = this.#rescaleMode ? Number(top.primes.at(-1)!) : 2 ** SCALE_MODE_WEIGHT_BITS;
    // The running sum at the top level is |sum of w~ x| * 2^scale * weightScale; it must stay below Q/2, with
    // room for twice the value limit (a mean plus a global model, heAddDiff in scale mode).
    const topBits = top.primes.reduce((a, q) => a + Math.log2(Number(q)), 0);
    this.#maxWeight = 2 ** (topBits - 1 - context.params.scaleBits - Math.log2(this.#weightScale)) / (2 * context.valueLimit);
  }

  /** The (server) context the aggregator works with, e.g. for `heAddDiff` on the global model. */
  get context(): HeContext {
    return this.#context;
  }

  /** How many updates this round has accepted. */
  get count(): number {
    return this.#seen.size;
  }

  /**
   * Adds one site's encrypted update. `ctx.from` is the authenticated site, `ctx.round` (optional) the round it
   * belongs to. Its weight is FLARE's: the aggregation weight (`ctx.weight`, else `aggregationWeights`, else 1)
   * times the update's meta NUM_STEPS_CURRENT_ROUND when present (unless `useSteps` is false).
   *
   * @throws HeError E_HE_WEIGHT, E_HE_ROUND_MISMATCH, E_HE_DUPLICATE_UPDATE, E_HE_NOT_ENCRYPTED (a plain update),
   *   E_HE_ENVELOPE, E_HE_PARAMS_MISMATCH, E_HE_CONTEXT_MISMATCH, E_HE_LAYOUT_MISMATCH, E_HE_CIPHERTEXT_TAMPERED,
   *   E_HE_CIPHERTEXT_INVALID, E_HE_CAPACITY; E_HE_ENGINE if SEAL fails on validated input (the round is then
   *   unusable until {@link HeAggregator.reset}).
   */
  accept(update: FLModel, ctx: AcceptContext): void {
    this.#usable();
    const weight = this.#weightOf(update, ctx);
    const layout = this.#layout;
    if (layout?.round !== undefined && ctx.round !== undefined && ctx.round !== layout.round) {
      throw new HeError('E_HE_ROUND_MISMATCH', `update from '${ctx.from}' is for round ${ctx.round}, this aggregation is round ${layout.round}`);
    }
    if (this.#seen.has(ctx.from)) throw new HeError('E_HE_DUPLICATE_UPDATE', `site '${ctx.from}' already contributed to this round`);

    const opened = openEncryptedModel(update);
    checkContext(opened, this.#context);
    const { envelope } = opened;
    if (envelope.aggregate !== undefined) throw new HeError('E_HE_ENVELOPE', `the update from '${ctx.from}' is an aggregate, not a site update`);
    if (layout !== undefined) this.#checkLayout(layout, update.kind, envelope, opened.plain, ctx.from);
    const checked = checkCiphertexts(opened, this.#engine);
    const top = this.#engine.shape.levels[0]!;
    for (const [i, c] of checked.entries()) {
      if (c.level !== top || c.scale !== this.#engine.scale) {
        throw new HeError('E_HE_CIPHERTEXT_INVALID', `ciphertext ${i} is not a fresh encryption (top level, scale 2^${this.#context.params.scaleBits})`);
      }
    }
    for (const [name, t] of opened.plain) {
      for (let j = 0; j < t.data.length; j++) {
        if (!Number.isFinite(Number(t.data[j]))) throw new HeError('E_HE_VALUE_RANGE', `plaintext tensor "${name}" holds a non-finite value`);
      }
    }
    const first = layout === undefined;
    if (first) {
      const perCiphertext = 2 * this.#engine.shape.degree * top.primes.length * 8;
      if (checked.length * perCiphertext > ACCUMULATOR_BUDGET_BYTES) {
        throw new HeError('E_HE_CAPACITY', `${envelope.length} encrypted values need ${Math.ceil((checked.length * perCiphertext) / 2 ** 20)} MiB of SEAL memory to aggregate; one aggregator holds at most ${ACCUMULATOR_BUDGET_BYTES / 2 ** 20} MiB`);
      }
    }
    const relative = first ? 1 : weight / this.#firstWeight;
    if (this.#normalizedTotal + relative > this.#maxWeight) {
      throw new HeError('E_HE_CAPACITY', `total weight would reach ${this.#normalizedTotal + relative} first-update weights; these parameters carry at most ${Math.floor(this.#maxWeight)}`);
    }

    // Everything is validated: from here on only SEAL could fail, which would leave partial sums behind.
    try {
      this.#add(checked, relative, opened.plain);
    } catch (e) {
      this.#broken = true;
      if (e instanceof FlareError && e.code === 'E_HE_ENGINE') throw e;
      throw new HeError('E_HE_ENGINE', 'aggregation failed on a validated update; reset the round', { cause: e });
    }
    if (first) {
      const plain = new Map<string, { dtype: Tensor['dtype']; shape: readonly number[] }>();
      for (const [name, t] of opened.plain) plain.set(name, { dtype: t.dtype, shape: t.shape });
      this.#layout = { envelope, kind: update.kind, plain, round: ctx.round };
      this.#firstWeight = weight;
    }
    this.#seen.add(ctx.from);
    this.#normalizedTotal += relative;
    this.#rawTotal += weight;
    for (const [k, v] of Object.entries(update.metrics ?? {})) {
      if (Number.isFinite(v)) this.#metrics.set(k, (this.#metrics.get(k) ?? 0) + relative * v);
    }
  }

  #weightOf(update: FLModel, ctx: AcceptContext): number {
    const base: unknown = ctx.weight ?? this.#siteWeights?.get(ctx.from) ?? 1;
    if (typeof base !== 'number' || !Number.isFinite(base) || base <= 0) {
      throw new HeError('E_HE_WEIGHT', `site '${ctx.from}' has weight ${String(base)}; weights must be positive finite numbers`);
    }
    const steps: unknown = update.meta[META.NUM_STEPS_CURRENT_ROUND];
    if (!this.#useSteps || steps === undefined) return base;
    if (typeof steps !== 'number' || !Number.isFinite(steps) || steps <= 0) {
      throw new HeError('E_HE_WEIGHT', `${META.NUM_STEPS_CURRENT_ROUND} of '${ctx.from}' must be a positive finite number`);
    }
    if (steps > this.#maxSteps) throw new HeError('E_HE_WEIGHT', `'${ctx.from}' reports ${steps} local steps, above the cap of ${this.#maxSteps}`);
    const total = base * steps;
    if (!Number.isFinite(total)) throw new HeError('E_HE_WEIGHT', `weight of '${ctx.from}' overflows`);
    return total;
  }

  #checkLayout(layout: Layout, kind: FLModel['kind'], envelope: HeEnvelope, plain: ReadonlyMap<string, Tensor>, from: string): void {
    const mismatch = (what: string) => new HeError('E_HE_LAYOUT_MISMATCH', `update from '${from}': ${what}`);
    if (kind !== layout.kind) throw mismatch(`kind '${kind}' differs from the round's '${layout.kind}'`);
    if (!samePacking(envelope, layout.envelope)) throw mismatch('its encrypted tensors (names, shapes, dtypes or order) differ from the first update');
    if (plain.size !== layout.plain.size) throw mismatch(`it has ${plain.size} plaintext tensors, the first update had ${layout.plain.size}`);
    for (const [name, t] of plain) {
      const want = layout.plain.get(name);
      if (want === undefined) throw mismatch(`plaintext tensor "${name}" is not in the first update`);
      if (want.dtype !== t.dtype || want.shape.length !== t.shape.length || want.shape.some((d, i) => d !== t.shape[i])) {
        throw mismatch(`plaintext tensor "${name}" has another dtype or shape`);
      }
    }
  }

  #add(checked: readonly CheckedCiphertext[], relative: number, plain: ReadonlyMap<string, Tensor>): void {
    const engine = this.#engine;
    const top = engine.shape.levels[0]!;
    const w = engine.constant(relative, this.#weightScale, top);
    try {
      checked.forEach((c, i) => {
        const ct = engine.load(c);
        let kept = false;
        try {
          engine.multiplyPlain(ct, w);
          const acc = this.#acc[i];
          if (acc === undefined) {
            this.#acc[i] = ct;
            kept = true;
          } else {
            engine.add(acc, ct);
          }
        } finally {
          if (!kept) ct.delete();
        }
      });
    } finally {
      w.delete();
    }
    for (const [name, t] of plain) {
      let sum = this.#plain.get(name);
      if (sum === undefined) {
        sum = new Float64Array(t.data.length);
        this.#plain.set(name, sum);
      }
      for (let j = 0; j < sum.length; j++) sum[j] = sum[j]! + relative * Number(t.data[j]);
    }
  }

  /**
   * The weighted mean of the accepted updates, still encrypted: an FLModel of the updates' kind whose
   * envelope records `aggregate: { clients, weight }` (weight is the sum of the raw weights). The round's
   * state is kept (call {@link HeAggregator.reset} for the next round).
   *
   * @throws HeError E_HE_NO_UPDATES before any update; E_HE_ENGINE after an engine failure.
   */
  result(): FLModel {
    this.#usable();
    const layout = this.#layout;
    if (layout === undefined) throw new HeError('E_HE_NO_UPDATES', 'no update has been accepted this round');
    const engine = this.#engine;
    const levels = engine.shape.levels;
    const total = this.#normalizedTotal;
    const cts: Uint8Array[] = [];
    let divisor: ReturnType<CkksEngine['constant']> | undefined;
    try {
      for (const acc of this.#acc) {
        const ct = engine.clone(acc);
        try {
          if (this.#rescaleMode) {
            engine.rescale(ct);
            divisor ??= engine.constant(1 / total, Number(ct.level.primes.at(-1)!), ct.level);
            engine.multiplyPlain(ct, divisor);
            engine.rescale(ct);
            engine.modSwitchTo(ct, levels.at(-1) as WireLevel);
          } else {
            engine.setScale(ct, ct.scale * total);
          }
          cts.push(engine.save(ct));
        } finally {
          ct.delete();
        }
      }
    } catch (e) {
      if (e instanceof FlareError) throw e;
      throw new HeError('E_HE_ENGINE', 'finishing the encrypted aggregate failed', { cause: e });
    } finally {
      divisor?.delete();
    }
    const params = new Map<string, Tensor>();
    for (const [name, spec] of layout.plain) {
      const sum = this.#plain.get(name)!;
      const mean = new Float64Array(sum.length);
      for (let j = 0; j < sum.length; j++) mean[j] = sum[j]! / total;
      params.set(name, tensor(toDtype(mean, spec.dtype), spec.shape, spec.dtype));
    }
    cts.forEach((bytes, i) => params.set(ciphertextName(i), tensor(bytes, [bytes.length], 'uint8')));
    const envelope: HeEnvelope = {
      ...layout.envelope,
      digests: cts.map(digest),
      aggregate: { clients: this.#seen.size, weight: this.#rawTotal },
    };
    const meta: Record<string, JsonValue> = { [HE_META_KEY]: envelopeJson(envelope) };
    if (layout.round !== undefined) meta[META.CURRENT_ROUND] = layout.round;
    const out: FLModel = { params, kind: layout.kind, meta };
    if (this.#metrics.size > 0) out.metrics = Object.fromEntries([...this.#metrics].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v / total]));
    return out;
  }

  /** Forgets the round: deletes the accumulators (SEAL memory) and the record of who contributed. */
  reset(): void {
    for (const ct of this.#acc) ct.delete();
    this.#acc = [];
    this.#plain = new Map();
    this.#seen = new Set();
    this.#metrics = new Map();
    this.#layout = undefined;
    this.#firstWeight = 0;
    this.#normalizedTotal = 0;
    this.#rawTotal = 0;
    this.#broken = false;
  }

  /** Resets and marks the aggregator unusable; disposes the context too when `disposeContext` was set. */
  dispose(): void {
    if (this.#disposed) return;
    this.reset();
    this.#disposed = true;
    if (this.#disposeContext) this.#context.dispose();
  }

  #usable(): void {
    if (this.#disposed) throw new TypeError('HeAggregator used after dispose()');
    engineOf(this.#context);
    if (this.#broken) throw new HeError('E_HE_ENGINE', 'a previous SEAL failure left this round inconsistent; call reset()');
  }
}
