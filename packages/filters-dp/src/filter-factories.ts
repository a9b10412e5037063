import { join } from 'node:path';
import { compileNamePattern, FlareError, type FilterEnv, type FilterFactory, type FLModel } from '@flare/core';
import { z } from 'zod';
import { dpSgdAccountant } from './dp-sgd-accountant.js';
import { excludeVars, MAX_EXCLUDE_PATTERN } from './exclude-vars.js';
import { gaussianDp } from './gaussian-dp.js';
import { metricsPrivacy } from './metrics-privacy.js';
import { openPrivacyLedger, type PrivacyLedger } from './privacy-ledger.js';
import type { PrivacyBudget } from './budget.js';
import { percentilePrivacy } from './percentile-privacy.js';
import { svtPrivacy } from './svt-privacy.js';

// Argument schemas for privacy.json and job definitions. FLARE's own filters keep FLARE's argument names
// (snake case), so a FLARE site policy loads as is; gaussian-dp is ours and uses the TypeScript names.
// `create` takes what `args` returned (defaults applied, data_kinds translated); the filters check values again.

/** The folder under a site's workspace where the privacy ledgers live: `<workspace>/dp-budget/`. */
export const BUDGET_FOLDER = 'dp-budget';

const positive = z.number().positive().finite();
const probability = z.number().gt(0).lt(1);

const budgetArgs = z.strictObject({
  maxEpsilon: positive,
  delta: probability,
  /** Which of the site's datasets the releases come from: one ledger per dataset, shared by all jobs. */
  dataset: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/).optional(),
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

/** Where the registered filters find the site's ledger. */
type LedgerOf = (env: FilterEnv) => PrivacyLedger;
// Without a ledger given, the one in the site workspace (one object per folder per process): no trusted heads,
// and heads reported through each filter's own audit hook.
const workspaceLedger: LedgerOf = (env) => openPrivacyLedger(join(env.workspace, BUDGET_FOLDER), { site: env.site });

/** A parsed `budget` argument with the site's ledger. */
function budgetOf(b: z.infer<typeof budgetArgs>, ledgerOf: LedgerOf, env: FilterEnv): PrivacyBudget {
  return { maxEpsilon: b.maxEpsilon, delta: b.delta, ledger: ledgerOf(env), ...(b.dataset === undefined ? {} : { dataset: b.dataset }) };
}

function gaussianFactory(ledgerOf: LedgerOf): FilterFactory<GaussianDpArgs> {
  return Object.freeze({
  name: 'gaussian-dp',
  args: gaussianArgs,
  create(args: GaussianDpArgs, env: FilterEnv) {
    const a = args;
    return gaussianDp({
      clipNorm: a.clipNorm,
      noiseMultiplier: a.noiseMultiplier,
      perTensor: a.perTensor,
      ...(a.adaptive === undefined ? {} : { adaptive: a.adaptive }),
      ...(a.budget === undefined ? {} : { budget: { ...budgetOf(a.budget, ledgerOf, env), samplingRate: a.budget.samplingRate, adjacency: a.budget.adjacency } }),
    });
  },
  });
}

/**
 * `gaussian-dp`: {@link gaussianDp} by name. With `budget`, each release is charged to the site's privacy ledger
 * for the budget's dataset (here the one under `<env.workspace>/dp-budget/`; see {@link createDpFilterFactories}).
 *
 * @example
 * ```json
 * { "name": "gaussian-dp", "args": { "clipNorm": 1, "noiseMultiplier": 1.1, "budget": { "maxEpsilon": 8, "delta": 1e-5 } } }
 * ```
 */
export const gaussianDpFactory: FilterFactory<GaussianDpArgs> = gaussianFactory(workspaceLedger);

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

function svtFactory(ledgerOf: LedgerOf): FilterFactory<SvtPrivacyArgs> {
  return Object.freeze({
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
      ...(a.budget === undefined ? {} : { budget: budgetOf(a.budget, ledgerOf, env) }),
    });
  },
  });
}

/** `svt-privacy`: {@link svtPrivacy} by name, with FLARE's arguments; `budget` as in gaussian-dp. */
export const svtPrivacyFactory: FilterFactory<SvtPrivacyArgs> = svtFactory(workspaceLedger);

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

function dpSgdFactoryWith(ledgerOf: LedgerOf): FilterFactory<DpSgdArgs> {
  return Object.freeze({
    name: 'dp-sgd',
    args: dpSgdArgs,
    create(args: DpSgdArgs, env: FilterEnv) {
      return dpSgdAccountant({ budget: budgetOf(args.budget, ledgerOf, env), minNoiseMultiplier: args.minNoiseMultiplier, maxSamplingRate: args.maxSamplingRate });
    },
  });
}

/**
 * `dp-sgd`: {@link dpSgdAccountant} by name, the record-level counterpart of gaussian-dp, charging the same
 * dataset ledger.
 *
 * @example
 * ```json
 * { "name": "dp-sgd", "args": { "budget": { "maxEpsilon": 4, "delta": 1e-5 }, "minNoiseMultiplier": 0.8 } }
 * ```
 */
export const dpSgdFactory: FilterFactory<DpSgdArgs> = dpSgdFactoryWith(workspaceLedger);

const metricName = z.string().min(1).max(256);
const metricsArgs = z
  .strictObject({
    allow: z.array(metricName).max(1024),
    gaussian: z
      .strictObject({
        noiseMultiplier: positive,
        metrics: z.record(metricName, z.strictObject({ sensitivity: positive, min: z.number().finite().optional(), max: z.number().finite().optional() })),
        budget: budgetArgs.optional(),
      })
      .optional(),
  })
  .superRefine((a, ctx) => {
    if (a.gaussian === undefined) return;
    for (const name of a.allow) if (a.gaussian.metrics[name] === undefined) ctx.addIssue({ code: 'custom', path: ['gaussian', 'metrics'], message: `allowed metric "${name}" has no noise settings` });
    for (const [name, m] of Object.entries(a.gaussian.metrics)) {
      if (!a.allow.includes(name)) ctx.addIssue({ code: 'custom', path: ['gaussian', 'metrics', name], message: 'noise settings for a metric that is not allowed' });
      if (m.min !== undefined && m.max !== undefined && !(m.min < m.max)) ctx.addIssue({ code: 'custom', path: ['gaussian', 'metrics', name], message: '"min" must be below "max"' });
    }
  });

/** Arguments of `metrics-privacy`: which metrics may leave the site, and how they are noised. */
export type MetricsPrivacyArgs = z.infer<typeof metricsArgs>;

function metricsFactory(ledgerOf: LedgerOf): FilterFactory<MetricsPrivacyArgs> {
  return Object.freeze({
    name: 'metrics-privacy',
    args: metricsArgs,
    create(args: MetricsPrivacyArgs, env: FilterEnv) {
      const g = args.gaussian;
      const metrics = Object.fromEntries(
        Object.entries(g?.metrics ?? {}).map(([name, m]) => [name, { sensitivity: m.sensitivity, ...(m.min === undefined ? {} : { min: m.min }), ...(m.max === undefined ? {} : { max: m.max }) }]),
      );
      return metricsPrivacy({
        allow: args.allow,
        ...(g === undefined ? {} : { gaussian: { noiseMultiplier: g.noiseMultiplier, metrics, ...(g.budget === undefined ? {} : { budget: budgetOf(g.budget, ledgerOf, env) }) } }),
      });
    },
  });
}

/**
 * `metrics-privacy`: {@link metricsPrivacy} by name. In a site's scope (task result filters) it decides which
 * metrics leave the site and, with `gaussian`, noises them, charging the dataset's ledger with a budget.
 *
 * @example
 * ```json
 * { "name": "metrics-privacy", "args": { "allow": ["accuracy"], "gaussian": { "noiseMultiplier": 4, "metrics": { "accuracy": { "sensitivity": 0.002, "min": 0, "max": 1 } }, "budget": { "maxEpsilon": 8, "delta": 1e-5 } } } }
 * ```
 */
export const metricsPrivacyFactory: FilterFactory<MetricsPrivacyArgs> = metricsFactory(workspaceLedger);

/** Options of {@link createDpFilterFactories}. */
export interface DpFilterFactoriesOptions {
  /**
   * The site's privacy ledger, opened once by the site with the heads its audit log recorded and its audit hook
   * (`openPrivacyLedger(join(workspace, BUDGET_FOLDER), { site, trustedHeads, audit })`). Default: the ledger
   * under each filter env's workspace, without trusted heads (a deletion while the process is down then goes
   * unnoticed).
   */
  readonly ledger?: PrivacyLedger;
}

/**
 * Every filter of this package as registry entries whose budgets charge the given ledger:
 * `new Map(createDpFilterFactories({ ledger }).map((f) => [f.name, f]))`.
 *
 * @throws TypeError when a filter env names another site than the ledger's.
 */
export function createDpFilterFactories(options: DpFilterFactoriesOptions = {}): readonly FilterFactory[] {
  const { ledger } = options;
  const ledgerOf: LedgerOf =
    ledger === undefined
      ? workspaceLedger
      : (env) => {
          if (env.site !== ledger.site) throw new TypeError(`the privacy ledger belongs to site "${ledger.site}", not "${env.site}"`);
          return ledger;
        };
  return Object.freeze([
    gaussianFactory(ledgerOf) as FilterFactory,
    percentilePrivacyFactory as FilterFactory,
    svtFactory(ledgerOf) as FilterFactory,
    excludeVarsFactory as FilterFactory,
    dpSgdFactoryWith(ledgerOf) as FilterFactory,
    metricsFactory(ledgerOf) as FilterFactory,
  ]);
}

/**
 * Every filter of this package as a registry entry, charging the ledger under each filter env's workspace
 * (`createDpFilterFactories()`); a site runtime should use `createDpFilterFactories({ ledger })` instead.
 */
export const dpFilterFactories: readonly FilterFactory[] = createDpFilterFactories();

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
