// The per-round admission rules every streaming aggregator shares (internal), FLARE's semantics
// (reference/flare-compat.md, "Aggregation weights"): a contribution is refused if it is for another round,
// from a site already counted this round, of the wrong kind, or late.

import { AggregatorError, META, type AcceptContext, type FLModel } from '@flare/core';

function isRound(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Checks a round number given by a programmer (constructor, reset). */
function checkRoundArg(round: number | undefined, what: string): void {
  if (round !== undefined && !isRound(round)) throw new RangeError(`"${what}" expected a non-negative integer, got ${String(round)}`);
}

/** What a contribution passed the guard with. */
export interface Admission {
  readonly from: string;
  readonly round: number | undefined;
}

/**
 * Round, site and kind bookkeeping of one aggregation round. `check` only reads; `commit` records a
 * contribution once the aggregator has taken it, so a refused contribution leaves no trace.
 */
export class RoundGuard {
  readonly kind: FLModel['kind'];
  #round: number | undefined;
  #pinned: number | undefined;
  #closed = false;
  readonly #seen = new Set<string>();

  constructor(kind: FLModel['kind'], round: number | undefined) {
    if (kind !== 'diff' && kind !== 'full') throw new TypeError(`"kind" expected 'diff' or 'full', got ${String(kind)}`);
    checkRoundArg(round, 'round');
    this.kind = kind;
    this.#round = round;
  }

  /** The round being aggregated: the configured one, else the first one a contribution stated. */
  get round(): number | undefined {
    return this.#round ?? this.#pinned;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get count(): number {
    return this.#seen.size;
  }

  /** The sites counted this round, sorted. */
  contributors(): string[] {
    return [...this.#seen].sort();
  }

  check(update: FLModel, ctx: AcceptContext): Admission {
    if (ctx === null || typeof ctx !== 'object' || typeof ctx.from !== 'string' || ctx.from.length === 0) {
      throw new TypeError('"ctx.from" expected the authenticated site name');
    }
    const from = ctx.from;
    if (this.#closed) throw new AggregatorError('E_AGG_LATE', `contribution from "${from}" arrived after round ${this.round ?? '(unnumbered)'} was aggregated`);
    if (this.#seen.has(from)) throw new AggregatorError('E_AGG_DUPLICATE', `"${from}" already contributed to this round`);
    if (update.kind !== this.kind) {
      throw new AggregatorError('E_AGG_KIND', `contribution from "${from}" is of kind "${String(update.kind)}"; this aggregator expects "${this.kind}"`);
    }
    const metaRound: unknown = update.meta?.[META.CURRENT_ROUND];
    if (metaRound !== undefined && !isRound(metaRound)) {
      throw new AggregatorError('E_AGG_ROUND', `contribution from "${from}" has a malformed ${META.CURRENT_ROUND}`);
    }
    if (ctx.round !== undefined && !isRound(ctx.round)) {
      throw new AggregatorError('E_AGG_ROUND', `contribution from "${from}" has a malformed round number`);
    }
    if (ctx.round !== undefined && metaRound !== undefined && ctx.round !== metaRound) {
      throw new AggregatorError('E_AGG_ROUND', `contribution from "${from}" was sent for round ${ctx.round} but its model says round ${metaRound}`);
    }
    const round = ctx.round ?? metaRound;
    const expected = this.round;
    if (expected !== undefined && round === undefined) {
      throw new AggregatorError('E_AGG_ROUND', `contribution from "${from}" does not say its round; round ${expected} is being aggregated`);
    }
    if (expected !== undefined && round !== expected) {
      throw new AggregatorError('E_AGG_ROUND', `contribution from "${from}" is for round ${round}; round ${expected} is being aggregated`);
    }
    return { from, round };
  }

  commit(admission: Admission): void {
    this.#seen.add(admission.from);
    if (this.#round === undefined && this.#pinned === undefined) this.#pinned = admission.round;
  }

  close(): void {
    this.#closed = true;
  }

  /** Starts (or, on a retry, restarts) aggregating `round`: forgets every contribution since the last start. */
  begin(round: number): void {
    if (round === undefined) throw new TypeError('"round" expected a non-negative integer, got undefined');
    checkRoundArg(round, 'round');
    this.#round = round;
    this.#pinned = undefined;
    this.#closed = false;
    this.#seen.clear();
  }

  /**
   * Starts a round: `round` if given; else, after the round's result was taken, the next round (the current
   * round + 1 when one is known); before it (a round that did not complete, e.g. too few sites), the same
   * round again, so that a retry's contributions are accepted.
   */
  reset(round?: number): void {
    checkRoundArg(round, 'round');
    if (round !== undefined) return this.begin(round);
    const current = this.round;
    if (this.#closed && current !== undefined) this.#round = current + 1;
    this.#pinned = undefined;
    this.#closed = false;
    this.#seen.clear();
  }
}
