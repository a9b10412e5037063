import { join } from 'node:path';
import { compileNamePattern, FlareError, type FilterEnv, type FilterFactory, type FLModel } from '@flare/core';
import { z } from 'zod';
import { fileBudgetStore } from './budget-store.js';
import { dpSgdAccountant } from './dp-sgd-accountant.js';
import { excludeVars, MAX_EXCLUDE_PATTERN } from './exclude-vars.js';
import { gaussianDp } from './gaussian-dp.js';
import { percentilePrivacy } from './percentile-privacy.js';
import { svtPrivacy } from './svt-privacy.js';

// Argument schemas for privacy.json and job definitions. FLARE's own filters keep FLARE's argument names
// (snake case), so a FLARE site policy loads as is; gaussian-dp is ours and uses the TypeScript names.
// `create` takes what `args` returned (defaults applied, data_kinds translated); the filters check values again.

/** The folder under a site's workspace where budgets live: `<workspace>/dp-budget/`. */
export const BUDGET_FOLDER = 'dp-budget';

const positive = z.number().positive().finite();
const probability = z.number().gt(0).lt(1);

const budgetArgs = z.strictObject({
  maxEpsilon: positive,
  delta: probability,
});

// FLARE's DataKind names for data_kinds.
const dataKinds = z
  .array(z.enum(['WEIGHTS', 'WEIGHT_DIFF']))
  .min(1)
  .max(2)
  .optional()
  .transform((v) => (v === undefined ? undefined : v.map((k): FLModel['kind'] => (k === 'WEIGHTS' ? 'full' : 'diff'))));

const gaussianArgs = z.strictObject({
  clipNorm: positive,
  noiseMultiplier: positive,
  perTensor: z.boolean().default(false),
  adaptive: z
    .strictObject({
      targetQuantile: probability.default(0.5),
      learningRate: positive.default(0.2),
      bitNoise: positive,
    })
    .optional(),
  budget: budgetArgs
    .extend({
      samplingRate: z.number().gt(0).lte(1).default(1),
      adjacency: z.enum(['add-remove', 'replace']).default('add-remove'),
    })
    .optional(),
});

/** Arguments of the `gaussian-dp` filter as privacy.json gives them (after defaults). */
export type GaussianDpArgs = z.infer<typeof gaussianArgs>;

const budgetStoreOf = (env: FilterEnv) => fileBudgetStore(join(env.workspace, BUDGET_FOLDER));

/**
 * `gaussian-dp`: {@link gaussianDp} by name. With `budget`, the spending is kept under
 * `<env.workspace>/dp-budget/` (atomic writes, survives restarts).
 *
 * @example
 * ```json
 * { "name": "gaussian-dp", "args": { "clipNorm": 1, "noiseMultiplier": 1.1, "budget": { "maxEpsilon": 8, "delta": 1e-5 } } }
 * ```
 */
export const gaussianDpFactory: FilterFactory<GaussianDpArgs> = Object.freeze({
  name: 'gaussian-dp',
  args: gaussianArgs,
  create(args: GaussianDpArgs, env: FilterEnv) {
    const a = args;
    return gaussianDp({
      clipNorm: a.clipNorm,
      noiseMultiplier: a.noiseMultiplier,
      perTensor: a.perTensor,
      ...(a.adaptive === undefined ? {} : { adaptive: a.adaptive }),
      ...(a.budget === undefined ? {} : { budget: { ...a.budget, store: budgetStoreOf(env) } }),
    });
  },
});

const percentileArgs = z.strictObject({
  percentile: z.number().min(0).max(100).default(10),
  gamma: positive.default(0.01),
  data_kinds: dataKinds,
});

/** Arguments of `percentile-privacy` (FLARE's PercentilePrivacy names and defaults). */
export type PercentilePrivacyArgs = z.infer<typeof percentileArgs>;

/** `percentile-privacy`: {@link percentilePrivacy} by name, with FLARE's arguments `percentile`, `gamma`, `data_kinds`. */
export const percentilePrivacyFactory: FilterFactory<PercentilePrivacyArgs> = Object.freeze({
  name: 'percentile-privacy',
  args: percentileArgs,
  create(args: PercentilePrivacyArgs) {
    const a = args;
    return percentilePrivacy({ percentile: a.percentile, gamma: a.gamma, ...(a.data_kinds === undefined ? {} : { kinds: a.data_kinds }) });
  },
});

const svtArgs = z.strictObject({
  fraction: z.number().min(0).max(1).default(0.1),
  epsilon: positive.default(0.1),
  noise_var: positive.default(0.1),
  gamma: positive.default(1e-5),
  tau: z.number().finite().default(1e-6),
  replace: z.boolean().default(true),
  epsilon_threshold: positive.optional(),
  epsilon_query: positive.optional(),
  epsilon_release: positive.optional(),
  data_kinds: dataKinds,
  budget: budgetArgs.optional(),
});

/** Arguments of `svt-privacy` (FLARE's SVTPrivacy names and defaults, plus our optional `budget`). */
export type SvtPrivacyArgs = z.infer<typeof svtArgs>;

/** `svt-privacy`: {@link svtPrivacy} by name, with FLARE's arguments; `budget` as in gaussian-dp. */
export const svtPrivacyFactory: FilterFactory<SvtPrivacyArgs> = Object.freeze({
  name: 'svt-privacy',
  args: svtArgs,
  create(args: SvtPrivacyArgs, env: FilterEnv) {
    const a = args;
    return svtPrivacy({
      fraction: a.fraction,
      epsilon: a.epsilon,
      noiseVar: a.noise_var,
      gamma: a.gamma,
      tau: a.tau,
      replace: a.replace,
      ...(a.epsilon_threshold === undefined ? {} : { epsilonThreshold: a.epsilon_threshold }),
      ...(a.epsilon_query === undefined ? {} : { epsilonQuery: a.epsilon_query }),
      ...(a.epsilon_release === undefined ? {} : { epsilonRelease: a.epsilon_release }),
      ...(a.data_kinds === undefined ? {} : { kinds: a.data_kinds }),
      ...(a.budget === undefined ? {} : { budget: { ...a.budget, store: budgetStoreOf(env) } }),
    });
  },
});

const tensorName = z.string().min(1).max(1024);
// Patterns may come from a job: checked here against core's linear-time subset, so an unsupported construct
// (backreference, lookaround) is refused when the job or policy loads, with the reason.
const pattern = z
  .string()
  .min(1)
  .max(MAX_EXCLUDE_PATTERN)
  .superRefine((p, ctx) => {
    try {
      compileNamePattern(p);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: e instanceof FlareError ? `${e.code}: ${e.message}` : 'not a valid tensor-name pattern' });
    }
  });

const excludeArgs = z
  .strictObject({
    exclude_vars: z.union([z.array(tensorName).min(1).max(100_000), pattern]).optional(),
    names: z.array(tensorName).min(1).max(100_000).optional(),
    pattern: pattern.optional(),
    data_kinds: dataKinds,
  })
  .refine((a) => [a.exclude_vars, a.names, a.pattern].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of "exclude_vars" (FLARE: a list of names or a regular expression), "names" and "pattern"',
  });

/** Arguments of `exclude-vars`: FLARE's `exclude_vars` (list or regex), or `names`, or `pattern`. */
export type ExcludeVarsArgs = z.infer<typeof excludeArgs>;

/** `exclude-vars`: {@link excludeVars} by name. */
export const excludeVarsFactory: FilterFactory<ExcludeVarsArgs> = Object.freeze({
  name: 'exclude-vars',
  args: excludeArgs,
  create(args: ExcludeVarsArgs) {
    const a = args;
    const kinds = a.data_kinds === undefined ? {} : { kinds: a.data_kinds };
    const v = a.exclude_vars ?? a.names ?? a.pattern!;
    return typeof v === 'string' ? excludeVars({ pattern: v, ...kinds }) : excludeVars({ names: v, ...kinds });
  },
});

const dpSgdArgs = z.strictObject({
  budget: budgetArgs,
  minNoiseMultiplier: z.number().min(0).finite().default(0),
  maxSamplingRate: z.number().gt(0).lte(1).default(1),
});

/** Arguments of the `dp-sgd` accountant as privacy.json gives them (after defaults). */
export type DpSgdArgs = z.infer<typeof dpSgdArgs>;

/**
 * `dp-sgd`: {@link dpSgdAccountant} by name, the record-level counterpart of gaussian-dp. Spending is kept under
 * `<env.workspace>/dp-budget/`, in the same ledger as gaussian-dp.
 *
 * @example
 * ```json
 * { "name": "dp-sgd", "args": { "budget": { "maxEpsilon": 4, "delta": 1e-5 }, "minNoiseMultiplier": 0.8 } }
 * ```
 */
export const dpSgdFactory: FilterFactory<DpSgdArgs> = Object.freeze({
  name: 'dp-sgd',
  args: dpSgdArgs,
  create(args: DpSgdArgs, env: FilterEnv) {
    return dpSgdAccountant({
      budget: { ...args.budget, store: budgetStoreOf(env) },
      minNoiseMultiplier: args.minNoiseMultiplier,
      maxSamplingRate: args.maxSamplingRate,
    });
  },
});

/**
 * Every filter of this package as a registry entry, for @flare/policy and @flare/runtime:
 * `new Map(dpFilterFactories.map((f) => [f.name, f]))`.
 */
export const dpFilterFactories: readonly FilterFactory[] = Object.freeze([
  gaussianDpFactory as FilterFactory,
  percentilePrivacyFactory as FilterFactory,
  svtPrivacyFactory as FilterFactory,
  excludeVarsFactory as FilterFactory,
  dpSgdFactory as FilterFactory,
]);

/**
 * The names FLARE's privacy.json uses for these filters (class names and Python paths) and the registered name
 * each corresponds to, so a registry can accept a FLARE site policy unchanged.
 */
export const FLARE_FILTER_ALIASES: ReadonlyMap<string, string> = new Map([
  ['PercentilePrivacy', 'percentile-privacy'],
  ['nvflare.app_common.filters.percentile_privacy.PercentilePrivacy', 'percentile-privacy'],
  ['nvflare.app_common.filters.PercentilePrivacy', 'percentile-privacy'],
  ['SVTPrivacy', 'svt-privacy'],
  ['nvflare.app_common.filters.svt_privacy.SVTPrivacy', 'svt-privacy'],
  ['nvflare.app_common.filters.SVTPrivacy', 'svt-privacy'],
  ['ExcludeVars', 'exclude-vars'],
  ['nvflare.app_common.filters.exclude_vars.ExcludeVars', 'exclude-vars'],
  ['nvflare.app_common.filters.ExcludeVars', 'exclude-vars'],
]);
