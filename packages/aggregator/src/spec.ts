import { AggregatorError, compileNamePattern, type AuditHook, type FLModel, type JsonValue, type ModelManifest, type NamePattern } from '@flare/core';
import { z } from 'zod';
import { AdaptiveNormBoundAggregator } from './adaptive-norm-bound.js';
import { BulyanAggregator } from './bulyan.js';
import { CoordinateMedianAggregator } from './coordinate-median.js';
import type { TensorExclusion } from './exclusion.js';
import { FedAdagrad } from './fed-adagrad.js';
import { FedAdam } from './fed-adam.js';
import { FedAvgM } from './fed-avg-m.js';
import { FedAvgAggregator } from './fed-avg.js';
import { FedYogi } from './fed-yogi.js';
import { GeometricMedianAggregator } from './geometric-median.js';
import { KrumAggregator, MultiKrumAggregator } from './krum.js';
import { NormBoundAggregator } from './norm-bound.js';
import { ServerOptAggregator } from './server-opt-aggregator.js';
import type { ServerOptimizer } from './server-optimizer.js';
import { TrimmedMeanAggregator } from './trimmed-mean.js';
import { restoreAggregatorState } from './state.js';
import type { RoundAggregator } from './types.js';

/** Every aggregator name a job definition may use. */
export const AGGREGATOR_NAMES = [
  'fedavg',
  'fedavgm',
  'fedadagrad',
  'fedadam',
  'fedyogi',
  'median',
  'trimmed-mean',
  'krum',
  'multi-krum',
  'bulyan',
  'geometric-median',
  'norm-bound',
] as const;

/** A name from {@link AGGREGATOR_NAMES}. */
export type AggregatorName = (typeof AGGREGATOR_NAMES)[number];

const positive = z.number().positive();
const fraction = z.number().min(0).lt(1);
const faults = z.int().min(0).max(1_000_000);

/**
 * Norm bounding in a job definition: a fixed `{ maxNorm }`, or the adaptive bound (`'adaptive'`, or
 * `{ adaptive: { multiple?, capSteps?, initialMaxNorm? } }`): each update clipped to `multiple` (default 3)
 * times the median update norm, and (unless `capSteps: false`) its step count to `multiple` times the median.
 */
export const NormBoundSpecSchema = z.union([
  z.strictObject({ maxNorm: positive }),
  z.literal('adaptive'),
  z.strictObject({
    adaptive: z.strictObject({
      multiple: z.number().min(1).max(1000).optional(),
      capSteps: z.boolean().optional(),
      initialMaxNorm: positive.optional(),
    }),
  }),
]);

/** A norm bound spec, as parsed. */
export type NormBoundSpec = z.infer<typeof NormBoundSpecSchema>;

// Arguments every aggregator takes. Tensor names and patterns come from a job definition: bounded in size.
const common = {
  kind: z.enum(['diff', 'full']).optional(),
  exclude: z.array(z.string().min(1).max(1024)).max(10_000).optional(),
  excludePattern: z.string().min(1).max(1024).optional(),
  normBound: NormBoundSpecSchema.optional(),
};
// Site names are keys of a JSON object from the job: refuse prototype keys outright rather than rely on how
// the record is rebuilt, and bound the count.
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype'];
const siteWeights = z
  .custom<object>((v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !PROTOTYPE_KEYS.some((k) => Object.hasOwn(v, k)), {
    message: 'expected an object of site names to weights, without prototype keys',
  })
  .pipe(z.record(z.string().min(1).max(256), positive))
  .refine((r) => Object.keys(r).length <= 100_000, { message: 'too many sites' });
const fedavg = { ...common, useSteps: z.boolean().optional(), maxSteps: positive.optional(), aggregationWeights: siteWeights.optional() };

const fedavgmArgs = { eta: positive.optional(), momentum: fraction.optional() };
const fedadagradArgs = { eta: positive.optional(), beta1: fraction.optional(), tau: z.number().min(0).optional(), initialAccumulator: z.number().min(0).optional() };
const fedadamArgs = { ...fedadagradArgs, beta2: fraction.optional(), biasCorrection: z.enum(['none', 'adam', 'flower']).optional() };
const fedyogiArgs = { ...fedadagradArgs, beta2: fraction.optional() };

/** A server optimizer named in a job definition, to run after a (robust) aggregator. */
export const ServerOptimizerSpecSchema = z.discriminatedUnion('name', [
  z.strictObject({ name: z.literal('fedavgm'), args: z.strictObject(fedavgmArgs).optional() }),
  z.strictObject({ name: z.literal('fedadagrad'), args: z.strictObject(fedadagradArgs).optional() }),
  z.strictObject({ name: z.literal('fedadam'), args: z.strictObject(fedadamArgs).optional() }),
  z.strictObject({ name: z.literal('fedyogi'), args: z.strictObject(fedyogiArgs).optional() }),
]);

/** A server optimizer spec, as parsed. */
export type ServerOptimizerSpec = z.infer<typeof ServerOptimizerSpecSchema>;

const then = { serverOptimizer: ServerOptimizerSpecSchema.optional() };

const baseSpecs = [
  z.strictObject({ name: z.literal('fedavg'), args: z.strictObject(fedavg).optional(), ...then }),
  z.strictObject({ name: z.literal('fedavgm'), args: z.strictObject({ ...fedavg, ...fedavgmArgs }).optional() }),
  z.strictObject({ name: z.literal('fedadagrad'), args: z.strictObject({ ...fedavg, ...fedadagradArgs }).optional() }),
  z.strictObject({ name: z.literal('fedadam'), args: z.strictObject({ ...fedavg, ...fedadamArgs }).optional() }),
  z.strictObject({ name: z.literal('fedyogi'), args: z.strictObject({ ...fedavg, ...fedyogiArgs }).optional() }),
  z.strictObject({ name: z.literal('median'), args: z.strictObject({ ...common, f: faults.optional() }).optional(), ...then }),
  z.strictObject({ name: z.literal('trimmed-mean'), args: z.strictObject({ ...common, beta: z.number().min(0).lt(0.5), f: faults.optional() }), ...then }),
  z.strictObject({ name: z.literal('krum'), args: z.strictObject({ ...common, f: faults }), ...then }),
  z.strictObject({ name: z.literal('multi-krum'), args: z.strictObject({ ...common, f: faults, m: z.int().min(1).max(1_000_000) }), ...then }),
  z.strictObject({
    name: z.literal('bulyan'),
    args: z.strictObject({ ...common, f: faults, selection: z.enum(['iterative-krum', 'multi-krum']).optional() }),
    ...then,
  }),
  z.strictObject({
    name: z.literal('geometric-median'),
    args: z
      .strictObject({
        ...common,
        f: faults.optional(),
        maxIterations: z.int().min(1).max(10_000).optional(),
        tolerance: z.number().min(0).optional(),
        smoothing: positive.optional(),
      })
      .optional(),
    ...then,
  }),
] as const;

/** Every spec but `norm-bound`: what `norm-bound` may wrap. */
const BaseSpecSchema = z.discriminatedUnion('name', [...baseSpecs]);

/**
 * The aggregator of a job definition: `{ name, args? }` (and, after a robust or plain FedAvg aggregator, an
 * optional `serverOptimizer`); or `{ name: 'norm-bound', args: <norm bound>, aggregator?: <spec> }`, norm
 * bounding around any other spec (default fedavg), the same as that spec with `args.normBound`. Unknown names
 * and unknown or out-of-range arguments are refused.
 *
 * @example
 * ```ts
 * AggregatorSpecSchema.parse({ name: 'trimmed-mean', args: { beta: 0.2, f: 2, kind: 'diff' } });
 * AggregatorSpecSchema.parse({ name: 'norm-bound', args: 'adaptive', aggregator: { name: 'krum', args: { f: 1 } } });
 * ```
 */
export const AggregatorSpecSchema = z.discriminatedUnion('name', [
  ...baseSpecs,
  z.strictObject({ name: z.literal('norm-bound'), args: NormBoundSpecSchema, aggregator: BaseSpecSchema.optional() }),
]);

/**
 * The aggregator of a job that names none: FedAvg with the adaptive norm bound (each update clipped to 3x the
 * median update norm, each step count to 3x the median), so that one site can replace neither the model nor
 * the others' weight. See the README for what it costs.
 */
export const DEFAULT_AGGREGATOR_SPEC = { name: 'fedavg', args: { normBound: 'adaptive' } } as const satisfies z.input<typeof AggregatorSpecSchema>;

/** An aggregator spec, as parsed. */
export type AggregatorSpec = z.infer<typeof AggregatorSpecSchema>;

/**
 * Parses an aggregator spec from a job definition (JSON already parsed, e.g. by core's parseStrictJson).
 *
 * @throws AggregatorError E_AGG_SPEC naming the first invalid field, also for an `excludePattern` that is
 *   not a valid regular expression.
 */
export function parseAggregatorSpec(value: unknown): AggregatorSpec {
  const parsed = AggregatorSpecSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    throw new AggregatorError('E_AGG_SPEC', `invalid aggregator spec at ${where}: ${issue?.message ?? 'invalid'}`);
  }
  const base = unwrap(parsed.data);
  const pattern = base.spec.args?.excludePattern;
  if (pattern !== undefined) compilePattern(pattern);
  return parsed.data;
}

type BaseSpec = z.infer<typeof BaseSpecSchema>;

/** A spec as the aggregator it names and the norm bound around it (from `norm-bound` or `args.normBound`). */
function unwrap(spec: AggregatorSpec): { readonly spec: BaseSpec; readonly bound: NormBoundSpec | undefined } {
  if (spec.name !== 'norm-bound') return { spec, bound: spec.args?.normBound };
  const inner: BaseSpec = spec.aggregator ?? { name: 'fedavg' };
  if (inner.args?.normBound !== undefined) {
    throw new AggregatorError('E_AGG_SPEC', 'invalid aggregator spec at aggregator.args.normBound: norm-bound already bounds the norm; give the bound once');
  }
  return { spec: inner, bound: spec.args };
}

/** A job's exclusion pattern, compiled for linear-time matching (backreferences and lookaround refused). */
function compilePattern(pattern: string): NamePattern {
  try {
    return compileNamePattern(pattern);
  } catch (e) {
    const why = e instanceof Error ? e.message.slice(0, 200) : 'not a valid pattern';
    throw new AggregatorError('E_AGG_SPEC', `invalid aggregator spec at args.excludePattern: ${why}`, { cause: e });
  }
}

/** What the runtime gives {@link createAggregator} besides the spec. */
export interface AggregatorEnv {
  /**
   * The global model: required by server optimizers (the initial model) and by norm bounding of `'full'`
   * contributions (a function returning the current round's global model, as it changes every round).
   */
  readonly global?: FLModel | (() => FLModel);
  /** The first round to aggregate. */
  readonly round?: number;
  readonly audit?: AuditHook;
  /**
   * The tensors contributions must have (core's `manifestOf(global)`): the aggregator refuses others
   * (E_MODEL_MISMATCH) instead of taking the first contribution's as the template.
   */
  readonly manifest?: ModelManifest;
  /**
   * A per-site cap on the steps (FedAvg family) a site's contribution counts with, e.g. the sample count the
   * site declared when it was admitted; on top of the spec's `maxSteps`.
   */
  readonly siteMaxSteps?: (site: string) => number | undefined;
  /**
   * What {@link saveAggregatorState} saved with the last checkpoint (server optimizer moments, the adaptive
   * bound's medians), to resume a job bit for bit. A server optimizer's own `saveState()` bytes or
   * `stateToJSON()` value are accepted too.
   */
  readonly state?: Uint8Array | JsonValue;
  /** @deprecated The same as `state` (kept for callers written before it). */
  readonly optimizerState?: Uint8Array | JsonValue;
}

function optimizerOf(spec: ServerOptimizerSpec): ServerOptimizer {
  switch (spec.name) {
    case 'fedavgm':
      return new FedAvgM(spec.args ?? {});
    case 'fedadagrad':
      return new FedAdagrad(spec.args ?? {});
    case 'fedadam':
      return new FedAdam(spec.args ?? {});
    case 'fedyogi':
      return new FedYogi(spec.args ?? {});
  }
}

/**
 * Builds the streaming aggregator a job definition names. FedOpt names (`fedavgm`, `fedadagrad`, `fedadam`,
 * `fedyogi`) and any `serverOptimizer` give a {@link ServerOptAggregator}; a fixed `normBound` clips every
 * contribution ({@link normBound}), the adaptive one wraps the result in an {@link AdaptiveNormBoundAggregator}.
 * Checkpoint its cross-round state with {@link saveAggregatorState} and pass it back as `env.state`.
 *
 * @throws AggregatorError E_AGG_SPEC for an invalid spec, E_AGG_STATE for a bad saved state; TypeError
 *   when a server optimizer or full-model norm bounding has no `env.global`.
 * @example
 * ```ts
 * const agg = createAggregator({ name: 'fedadam', args: { eta: 0.01, kind: 'diff' } }, { global: initial, round: 0 });
 * ```
 */
export function createAggregator(spec: unknown, env: AggregatorEnv = {}): RoundAggregator {
  const { spec: s, bound } = unwrap(parseAggregatorSpec(spec));
  const a = s.args ?? {};
  const exclude: TensorExclusion | undefined =
    a.exclude === undefined && a.excludePattern === undefined
      ? undefined
      : [...(a.exclude ?? []), ...(a.excludePattern === undefined ? [] : [compilePattern(a.excludePattern)])];
  const kind = a.kind ?? 'diff';
  const base = {
    kind,
    ...(env.round === undefined ? {} : { round: env.round }),
    ...(env.audit === undefined ? {} : { audit: env.audit }),
    ...(exclude === undefined ? {} : { exclude }),
    ...(env.manifest === undefined ? {} : { manifest: env.manifest }),
  };
  const f = 'f' in a && a.f !== undefined ? { f: a.f } : {};
  const globalNow = (): FLModel | undefined => (typeof env.global === 'function' ? env.global() : env.global);

  let optimizer: ServerOptimizer | undefined;
  let inner: RoundAggregator;
  switch (s.name) {
    case 'fedavg':
    case 'fedavgm':
    case 'fedadagrad':
    case 'fedadam':
    case 'fedyogi': {
      const args = s.args ?? {};
      if (s.name !== 'fedavg') {
        const { kind: _k, exclude: _e, excludePattern: _p, normBound: _n, useSteps: _u, maxSteps: _m, aggregationWeights: _w, ...hyper } = args;
        optimizer = optimizerOf({ name: s.name, args: hyper } as ServerOptimizerSpec);
      }
      const template = optimizer === undefined || env.manifest !== undefined ? undefined : globalNow();
      inner = new FedAvgAggregator({
        ...base,
        ...(args.useSteps === undefined ? {} : { useSteps: args.useSteps }),
        ...(args.maxSteps === undefined ? {} : { maxSteps: args.maxSteps }),
        ...(env.siteMaxSteps === undefined ? {} : { siteMaxSteps: env.siteMaxSteps }),
        ...(args.aggregationWeights === undefined ? {} : { aggregationWeights: new Map(Object.entries(args.aggregationWeights)) }),
        ...(template === undefined ? {} : { template }),
      });
      break;
    }
    case 'median':
      inner = new CoordinateMedianAggregator({ ...base, ...f });
      break;
    case 'trimmed-mean':
      inner = new TrimmedMeanAggregator({ ...base, ...f, beta: s.args.beta });
      break;
    case 'krum':
      inner = new KrumAggregator({ ...base, f: s.args.f });
      break;
    case 'multi-krum':
      inner = new MultiKrumAggregator({ ...base, f: s.args.f, m: s.args.m });
      break;
    case 'bulyan':
      inner = new BulyanAggregator({ ...base, f: s.args.f, ...(s.args.selection === undefined ? {} : { selection: s.args.selection }) });
      break;
    case 'geometric-median': {
      const g = s.args ?? {};
      inner = new GeometricMedianAggregator({
        ...base,
        ...f,
        ...(g.maxIterations === undefined ? {} : { maxIterations: g.maxIterations }),
        ...(g.tolerance === undefined ? {} : { tolerance: g.tolerance }),
        ...(g.smoothing === undefined ? {} : { smoothing: g.smoothing }),
      });
      break;
    }
  }
  if (optimizer === undefined && 'serverOptimizer' in s && s.serverOptimizer !== undefined) optimizer = optimizerOf(s.serverOptimizer);

  const fixed = bound !== undefined && typeof bound === 'object' && 'maxNorm' in bound ? { maxNorm: bound.maxNorm, ...(exclude === undefined ? {} : { exclude }) } : undefined;
  const adaptive = bound === 'adaptive' ? {} : bound !== undefined && typeof bound === 'object' && 'adaptive' in bound ? bound.adaptive : undefined;
  let out: RoundAggregator = inner;
  let reference: FLModel | (() => FLModel) | undefined = env.global;
  if (optimizer !== undefined) {
    const global = globalNow();
    if (global === undefined) throw new TypeError(`createAggregator: ${optimizer.name} needs the initial global model as env.global`);
    const opt = new ServerOptAggregator({ ...base, optimizer, global, inner, ...(fixed === undefined ? {} : { normBound: fixed }) });
    reference = () => opt.currentGlobal;
    out = opt;
  } else if (fixed !== undefined) {
    if (kind === 'full' && env.global === undefined) throw new TypeError('createAggregator: norm bounding of full models needs env.global');
    out = new NormBoundAggregator(inner, { ...fixed, ...(reference === undefined ? {} : { reference }) });
  }
  if (adaptive !== undefined) {
    if (kind === 'full' && reference === undefined) throw new TypeError('createAggregator: norm bounding of full models needs env.global');
    out = new AdaptiveNormBoundAggregator(out, {
      ...(adaptive.multiple === undefined ? {} : { multiple: adaptive.multiple }),
      ...(adaptive.capSteps === false ? { stepsMultiple: Number.POSITIVE_INFINITY } : {}),
      ...(adaptive.initialMaxNorm === undefined ? {} : { initialMaxNorm: adaptive.initialMaxNorm }),
      ...(reference === undefined ? {} : { reference }),
      ...(exclude === undefined ? {} : { exclude }),
      ...(env.audit === undefined ? {} : { audit: env.audit }),
    });
  }
  const state = env.state ?? env.optimizerState;
  if (state !== undefined) restoreAggregatorState(out, state);
  return out;
}
