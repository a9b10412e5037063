import { AggregatorSpecSchema, DEFAULT_AGGREGATOR_SPEC, createAggregator, parseAggregatorSpec, saveAggregatorState, type AggregatorSpec } from '@flare/aggregator';
import { CodecError, FlareRuntimeError, manifestOf, parseStrictJson, type Aggregator } from '@flare/core';
import { z } from 'zod';
import type { JobDefinition } from '../protocol/job-definition.js';
import type { AggregatorFactory } from './job-runner.js';
import { checkRelayContribution, contributorMaxSteps, type RelayTree } from './relay-contributions.js';

/** Aggregators that bound what one site can do to the result by construction (Byzantine-robust). */
const ROBUST = new Set(['median', 'trimmed-mean', 'krum', 'multi-krum', 'bulyan', 'geometric-median']);

/**
 * The server's own aggregation policy (`local/aggregation.json` in the server's kit): what a job gets when it
 * names no aggregator, what every job's aggregator must do, and how many local steps one site's update may
 * count with. A job may opt out of the default only as far as `require` allows.
 *
 * @example
 * ```json
 * { "format_version": "1.0", "require": "norm-bound-or-robust", "max_steps": 10000 }
 * ```
 */
export const AggregationPolicySchema = z.strictObject({
  format_version: z.literal('1.0').optional(),
  /** The aggregator of a job that names none (default: FedAvg with the adaptive norm bound). */
  default: AggregatorSpecSchema.optional(),
  /**
   * What every job's aggregator must do: `norm-bound-or-robust` (default: a norm bound, fixed or adaptive, or a
   * robust aggregator), `norm-bound`, `robust`, `norm-bound-and-robust`, or `none` (any aggregator; plain FedAvg
   * lets one site replace the model).
   */
  require: z.enum(['none', 'norm-bound', 'robust', 'norm-bound-or-robust', 'norm-bound-and-robust']).default('norm-bound-or-robust'),
  /** The most local steps (NUM_STEPS_CURRENT_ROUND) one site's update counts with in FedAvg-family weights. */
  max_steps: z.number().positive().max(1e12).optional(),
});
/** A parsed aggregation policy. */
export type AggregationPolicy = z.output<typeof AggregationPolicySchema>;

/** The policy of a server without local/aggregation.json: the secure default. */
export const DEFAULT_AGGREGATION_POLICY: AggregationPolicy = Object.freeze({ require: 'norm-bound-or-robust' as const });

/** What an aggregator spec does, for the policy. */
function traits(spec: AggregatorSpec): { readonly normBound: boolean; readonly robust: boolean } {
  if (spec.name === 'norm-bound') return { normBound: true, robust: ROBUST.has(spec.aggregator?.name ?? 'fedavg') };
  return { normBound: spec.args !== undefined && 'normBound' in spec.args && spec.args.normBound !== undefined, robust: ROBUST.has(spec.name) };
}

/** Why `spec` does not meet `require`, or undefined when it does. */
function unmet(spec: AggregatorSpec, require: AggregationPolicy['require']): string | undefined {
  const t = traits(spec);
  switch (require) {
    case 'none':
      return undefined;
    case 'norm-bound':
      return t.normBound ? undefined : 'a norm bound (args.normBound, or the norm-bound aggregator)';
    case 'robust':
      return t.robust ? undefined : `a robust aggregator (${[...ROBUST].join(', ')})`;
    case 'norm-bound-or-robust':
      return t.normBound || t.robust ? undefined : `a norm bound or a robust aggregator (${[...ROBUST].join(', ')})`;
    case 'norm-bound-and-robust':
      return t.normBound && t.robust ? undefined : 'a robust aggregator with a norm bound';
  }
}

/**
 * Parses `local/aggregation.json` (text, bytes or a parsed value); its own default must meet its own `require`.
 *
 * @throws FlareRuntimeError E_RUNTIME_AGGREGATOR_POLICY naming the field at fault.
 */
export function parseAggregationPolicy(json: unknown, file = 'aggregation.json'): AggregationPolicy {
  let value = json;
  try {
    if (typeof json === 'string') value = parseStrictJson(json);
    else if (json instanceof Uint8Array) value = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    throw new FlareRuntimeError('E_RUNTIME_AGGREGATOR_POLICY', `${file} is not valid JSON${e instanceof CodecError ? `: ${e.message}` : ''}`, { cause: e });
  }
  const r = AggregationPolicySchema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FlareRuntimeError('E_RUNTIME_AGGREGATOR_POLICY', `${file}: ${i?.path.join('.') || '(top)'}: ${i?.message ?? 'invalid'}`, { cause: r.error });
  }
  const policy = r.data;
  const why = unmet(policy.default ?? (DEFAULT_AGGREGATOR_SPEC as AggregatorSpec), policy.require);
  if (why !== undefined) throw new FlareRuntimeError('E_RUNTIME_AGGREGATOR_POLICY', `${file}: its default aggregator does not meet its own require ("${policy.require}"): it needs ${why}`);
  return policy;
}

/**
 * The aggregator spec a job runs with under the server's policy: the job's own when it names one and it meets
 * `require`, the policy's default otherwise.
 *
 * @throws FlareRuntimeError E_RUNTIME_AGGREGATOR_POLICY when the job's aggregator does not meet `require`.
 */
export function aggregatorSpecFor(definition: JobDefinition, policy: AggregationPolicy = DEFAULT_AGGREGATION_POLICY): AggregatorSpec {
  if (definition.aggregator === undefined) return policy.default ?? parseAggregatorSpec(DEFAULT_AGGREGATOR_SPEC);
  const why = unmet(definition.aggregator, policy.require);
  if (why !== undefined) {
    throw new FlareRuntimeError('E_RUNTIME_AGGREGATOR_POLICY', `meta.json: aggregator '${definition.aggregator.name}' is not allowed by this server's aggregation policy ("require": "${policy.require}"): it needs ${why}`);
  }
  return definition.aggregator;
}

/**
 * The job's aggregator under `policy`: @flare/aggregator's `createAggregator` on the spec {@link aggregatorSpecFor}
 * chooses, starting at the job's first round, refusing updates that do not fit the global model's manifest,
 * with each site's steps capped at `max_steps`, and with the state the last checkpoint saved (a server
 * optimizer's moments, the adaptive bound's medians) so a resumed job goes on exactly where it stopped. With
 * `relays` (the aggregating relays below, `relayTreeOf(kit)`), a relay's update counts with at most the caps of
 * the sites it names, each provisioned below it (`checkRelayContribution`).
 */
export function policyAggregator(policy: AggregationPolicy = DEFAULT_AGGREGATION_POLICY, relays: RelayTree = new Map()): AggregatorFactory {
  return (definition, env): Aggregator => {
    const maxSteps = policy.max_steps;
    const aggregator = createAggregator(aggregatorSpecFor(definition, policy), {
      global: env.global,
      round: env.round,
      manifest: manifestOf(env.global),
      ...(maxSteps === undefined ? {} : { siteMaxSteps: contributorMaxSteps(relays, maxSteps) }),
      ...(env.state === undefined ? {} : { state: env.state }),
      ...(env.audit === undefined ? {} : { audit: env.audit }),
    });
    if (relays.size === 0) return aggregator;
    // Aggregating relays' claims are checked (and their steps capped) before the aggregator counts them; the
    // same instance stays, so the checkpointed state (saveAggregatorState) still reads from it.
    const accept = aggregator.accept.bind(aggregator);
    aggregator.accept = (update, ctx) => accept(checkRelayContribution(update, ctx.from, relays, maxSteps, env.audit), ctx);
    return aggregator;
  };
}

/** The state to checkpoint with a round of a spec-built aggregator (@flare/aggregator's `saveAggregatorState`). */
export const aggregatorState = (aggregator: Aggregator): Uint8Array | undefined =>
  typeof (aggregator as { beginRound?: unknown }).beginRound === 'function' ? saveAggregatorState(aggregator as Parameters<typeof saveAggregatorState>[0]) : undefined;
