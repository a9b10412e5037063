// Contribution weights (internal).

import { AggregatorError, META, type AcceptContext, type FLModel } from '@flare/core';
import type { WeightedUpdate } from './types.js';

/** How FedAvg turns a contribution into a weight. */
export interface WeightRules {
  /** Multiply by the update's meta NUM_STEPS_CURRENT_ROUND (FLARE's semantics; default true). */
  readonly useSteps: boolean;
  /** Count step counts above this as this (a site can claim any count: cap what one site can weigh). */
  readonly maxSteps: number;
  /** A per-site cap on top of `maxSteps` (e.g. the sample count the site declared when it was admitted). */
  readonly siteMaxSteps?: ((site: string) => number | undefined) | undefined;
}

/** A contribution's weight, and the step count it claimed when a cap lowered it. */
export interface ContributionWeight {
  readonly weight: number;
  readonly capped?: { readonly claimed: number; readonly cap: number };
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
 * finite and > 0 (E_AGG_WEIGHT otherwise); the steps are counted as at most `maxSteps` and the site's own cap.
 */
export function contributionWeight(update: FLModel, weight: number | undefined, from: string, rules: WeightRules): ContributionWeight {
  const w = checkWeight(weight ?? 1, from);
  if (!rules.useSteps) return { weight: w };
  const steps: unknown = update.meta?.[META.NUM_STEPS_CURRENT_ROUND];
  if (steps === undefined) return { weight: w };
  if (typeof steps !== 'number' || !Number.isFinite(steps) || steps <= 0) {
    throw new AggregatorError('E_AGG_WEIGHT', `${META.NUM_STEPS_CURRENT_ROUND} of "${from}" must be a finite number > 0`);
  }
  const own = rules.siteMaxSteps?.(from);
  if (own !== undefined && !(typeof own === 'number' && own > 0)) throw new RangeError(`"siteMaxSteps" returned ${String(own)} for "${from}"; expected a number > 0 or undefined`);
  const cap = Math.min(rules.maxSteps, own ?? Number.POSITIVE_INFINITY);
  const counted = Math.min(steps, cap);
  const total = w * counted;
  if (!Number.isFinite(total)) throw new AggregatorError('E_AGG_WEIGHT', `weight of "${from}" overflows`);
  return steps > cap ? { weight: total, capped: { claimed: steps, cap } } : { weight: total };
}

/** The accept context of a standalone update: its name, or "(update i)" (never a valid site name). */
export function contextOf(u: WeightedUpdate, index: number): AcceptContext {
  const from = u.from ?? `(update ${index})`;
  return u.weight === undefined ? { from } : { from, weight: u.weight };
}
