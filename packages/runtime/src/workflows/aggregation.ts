import { FlareRuntimeError, add, checkUpdateAgainst, l2norm, manifestOf, type AcceptContext, type AggregationScheme, type Aggregator, type FLModel, type JsonValue, type ModelManifest } from '@flare/core';

/** A plaintext aggregator; @flare/aggregator's start a round (again, on a retry) with `beginRound`. */
type Plain = Aggregator & { dispose?(): void };

/** Options of {@link JobAggregation}. */
export interface JobAggregationOptions {
  /** The job's plaintext aggregator (from meta.json's `aggregator`, or the server's default). */
  readonly plain: Aggregator;
  /** Schemes for updates plaintext aggregators cannot read (e.g. @flare/filters-he's `heAggregationScheme`). */
  readonly schemes?: readonly AggregationScheme[];
}

/**
 * A job's aggregation, round by round: every update is checked against the global model's manifest (tensor
 * names, shapes, dtypes) before any aggregator sees it, so one site's malformed update is refused alone and
 * cannot set the template for the others; updates in a scheme's form (encrypted) go to that scheme's
 * aggregator and the plaintext ones to the job's; a round never mixes the two. `advance` computes the next
 * global model the same way: the scheme's arithmetic for its aggregates, core's `add` for plaintext diffs.
 */
export class JobAggregation {
  readonly #plain: Plain;
  readonly #schemes: readonly AggregationScheme[];
  readonly #scheme = new Map<AggregationScheme, Aggregator & { dispose?(): void }>();
  #manifest: ModelManifest | undefined;
  #mode: AggregationScheme | 'plain' | undefined;
  #round = 0;

  constructor(o: JobAggregationOptions) {
    this.#plain = o.plain;
    this.#schemes = o.schemes ?? [];
  }

  /** The job's plaintext aggregator (to read its state for a checkpoint). */
  get plain(): Aggregator {
    return this.#plain;
  }

  /** Starts round `round` (again, on a retry): fresh sums in every aggregator; `global` is the model the round's updates are checked against. */
  begin(round: number, global: FLModel): void {
    this.#round = round;
    this.#mode = undefined;
    this.#manifest = this.#schemeOf(global) === undefined ? manifestOf(global) : undefined;
    // A retry of round r starts r again: the aggregator must not move on to r + 1 (issue #14 item 2).
    if (this.#plain.beginRound !== undefined) this.#plain.beginRound(round);
    else this.#plain.reset();
    for (const a of this.#scheme.values()) a.reset();
  }

  #schemeOf(m: FLModel): AggregationScheme | undefined {
    return this.#schemes.find((s) => s.claims(m));
  }

  /**
   * Checks `update` and hands it to its aggregator. Returns what the audit may say about it (its norm, or
   * the scheme's figures for an update it cannot read).
   *
   * @throws ModelError E_MODEL_MISMATCH (a tensor not in the global model, or another shape or dtype: core's
   *   `checkUpdateAgainst`), FlareRuntimeError E_RUNTIME_HE_UNAVAILABLE (an encrypted update and no scheme),
   *   E_RUNTIME_ENCRYPTION_MIXED; and the aggregator's own refusals (E_AGG_*).
   */
  accept(update: FLModel, ctx: AcceptContext): Record<string, JsonValue> {
    const scheme = this.#schemeOf(update);
    if (scheme === undefined && isEnvelope(update)) {
      throw new FlareRuntimeError('E_RUNTIME_HE_UNAVAILABLE', `${ctx.from} sent an encrypted update and this server has no HE context to aggregate it`);
    }
    const mode = scheme ?? 'plain';
    if (this.#mode !== undefined && this.#mode !== mode) {
      throw new FlareRuntimeError('E_RUNTIME_ENCRYPTION_MIXED', `${ctx.from} sent a ${scheme === undefined ? 'plaintext' : 'encrypted'} update into a round of ${this.#mode === 'plain' ? 'plaintext' : 'encrypted'} updates`);
    }
    if (scheme === undefined) {
      // Before any aggregator sees it: one site's malformed update is refused alone. A missing tensor is allowed
      // (a site's exclude-vars filter withholds tensors; FedAvg averages each over the sites that sent it).
      if (this.#manifest !== undefined) checkUpdateAgainst(this.#manifest, update, { from: ctx.from, partial: true });
      this.#plain.accept(update, { ...ctx, round: this.#round });
      this.#mode = mode;
      return { norm: l2norm(update) };
    }
    let agg = this.#scheme.get(scheme);
    if (agg === undefined) this.#scheme.set(scheme, (agg = scheme.createAggregator()));
    agg.accept(update, ctx);
    this.#mode = mode;
    return scheme.describe(update);
  }

  /** True when the round's updates were in a scheme's form (encrypted). */
  get encrypted(): boolean {
    return this.#mode !== undefined && this.#mode !== 'plain';
  }

  /** The round's aggregate. */
  result(): FLModel {
    const m = this.#mode;
    if (m === undefined || m === 'plain') return this.#plain.result();
    return this.#scheme.get(m)!.result();
  }

  /**
   * The global model after the round: a scheme advances its own aggregates (a plaintext diff cannot advance an
   * encrypted global model: E_RUNTIME_ENCRYPTION_MIXED); a plaintext `diff` is added, a `full` model replaces.
   */
  advance(global: FLModel, aggregate: FLModel, meta: Record<string, JsonValue>): FLModel {
    const scheme = this.#schemeOf(aggregate);
    if (scheme !== undefined) {
      const next = scheme.advance(global, aggregate);
      return { params: next.params, kind: 'full', meta: { ...meta, ...next.meta } };
    }
    if (aggregate.kind === 'diff' && this.#schemeOf(global) !== undefined) {
      throw new FlareRuntimeError('E_RUNTIME_ENCRYPTION_MIXED', 'plaintext updates cannot advance an encrypted global model');
    }
    const next = aggregate.kind === 'diff' ? add(global, aggregate) : aggregate;
    return { params: next.params, kind: 'full', meta };
  }

  /** Frees what the scheme aggregators hold (e.g. SEAL's WebAssembly heap). */
  dispose(): void {
    for (const a of this.#scheme.values()) a.dispose?.();
    this.#scheme.clear();
    this.#plain.dispose?.();
  }
}

/** An update that says it is encrypted (the envelope meta key of @flare/filters-he) though no scheme claims it. */
function isEnvelope(m: FLModel): boolean {
  return Object.hasOwn(m.meta, 'flare.he');
}
