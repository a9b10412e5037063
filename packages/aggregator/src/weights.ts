// Contribution weights (internal).

import { AggregatorError, META, type AcceptContext, type FLModel } from '@flare/core';
import type { WeightedUpdate } from './types.js';

/** How FedAvg turns a contribution into a weight. */
export interface WeightRules {
  /** Multiply by the update's meta NUM_STEPS_CURRENT_ROUND (FLARE's semantics; default true). */
  readonly useSteps: boolean;
  /** Refuse step counts above this (a site can claim any count: cap what one site can weigh). */
  readonly maxSteps: number;
}

/** Checks an aggregation weight: finite and > 0 (E_AGG_WEIGHT). */
export function checkWeight(weight: unknown, from: string): number {
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new AggregatorError('E_AGG_WEIGHT', `aggregation weight of "${from}" must be a finite number > 0, got ${String(weight)}`);
  }
  return weight;
}

/**
 * FLARE's contribution weight: aggregation weight (default 1) x NUM_STEPS_CURRENT_ROUND (default 1), both
 * finite and > 0, the steps at most `maxSteps` (E_AGG_WEIGHT otherwise).
 */
export function contributionWeight(update: FLModel, weight: number | undefined, from: string, rules: WeightRules): number {
  const w = checkWeight(weight ?? 1, from);
  if (!rules.useSteps) return w;
  const steps: unknown = update.meta?.[META.NUM_STEPS_CURRENT_ROUND];
  if (steps === undefined) return w;
  if (typeof steps !== 'number' || !Number.isFinite(steps) || steps <= 0) {
    throw new AggregatorError('E_AGG_WEIGHT', `${META.NUM_STEPS_CURRENT_ROUND} of "${from}" must be a finite number > 0`);
  }
  if (steps > rules.maxSteps) {
    throw new AggregatorError('E_AGG_WEIGHT', `"${from}" reports ${steps} local steps, above the cap of ${rules.maxSteps}`);
  }
  const total = w * steps;
  if (!Number.isFinite(total)) throw new AggregatorError('E_AGG_WEIGHT', `weight of "${from}" overflows`);
  return total;
}

/** The accept context of a standalone update: its name, or "(update i)" (never a valid site name). */
export function contextOf(u: WeightedUpdate, index: number): AcceptContext {
  const from = u.from ?? `(update ${index})`;
  return u.weight === undefined ? { from } : { from, weight: u.weight };
}
