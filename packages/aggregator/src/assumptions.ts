// Parameter checks shared by the robust aggregators (internal).

import { AggregatorError } from '@flare/core';

/** `f`, the number of faulty contributions to tolerate: a non-negative integer (programmer misuse otherwise). */
export function checkF(f: unknown, method: string): number {
  if (typeof f !== 'number' || !Number.isSafeInteger(f) || f < 0) throw new RangeError(`${method}: "f" expected a non-negative integer, got ${String(f)}`);
  return f;
}

/** Refuses (E_AGG_ASSUMPTION) when n < need; `rule` is the assumption in words, e.g. "n >= 2f + 3". */
export function requireAtLeast(n: number, need: number, method: string, rule: string, f: number): void {
  if (n < need) {
    throw new AggregatorError('E_AGG_ASSUMPTION', `${method} with f = ${f} needs ${rule} = ${need} contributions, got ${n}`);
  }
}
