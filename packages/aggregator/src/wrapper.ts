// The part every aggregator that wraps another shares (internal): it is the inner aggregator as far as the
// round, the kind, the method name and the contributors go.

import type { AcceptContext, FLModel } from '@flare/core';
import type { RoundAggregator } from './types.js';

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

  beginRound(round: number): void {
    this.inner.beginRound(round);
  }

  reset(round?: number): void {
    this.inner.reset(round);
  }
}
