import { DpError, parameterCount, type Filter, type FilterContext, type FLModel, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { SAMPLER_EPSILON_PER_COORDINATE, SAMPLER_TV_PER_COORDINATE } from './discrete-gaussian.js';
import { chargeRelease, DP_SPENT_META, spentJson, type PrivacyBudget } from './budget.js';
import { rdp } from './rdp.js';
import { checkAborted } from './update-checks.js';

/** The meta key a DP-SGD learner reports its run under (@flare/tfjs writes it). */
export const DP_SGD_META = 'dp_sgd';

// What a DP-SGD learner reports for one round: the parameters of the subsampled Gaussian mechanism it ran.
const DpSgdReport = z.strictObject({
  noise_multiplier: z.number().positive().finite(),
  sampling_rate: z.number().gt(0).lte(1),
  clip_norm: z.number().positive().finite(),
  steps: z.int().min(0).max(10_000_000),
  // Accepted from learners that still report it, never needed: epsilon depends on (z, q, C, steps) only.
  examples: z.int().min(1).optional(),
});

/** Options of {@link dpSgdAccountant}. */
export interface DpSgdAccountantOptions {
  /** The site's budget for each job; spending is written before the update leaves. */
  readonly budget: PrivacyBudget;
  /** The smallest noise multiplier this site accepts (default: any; the budget still bounds ε). */
  readonly minNoiseMultiplier?: number;
  /** The largest sampling rate this site accepts (default 1). */
  readonly maxSamplingRate?: number;
}

/**
 * Record-level differential privacy at a site: the accountant for updates trained with DP-SGD (Abadi et al.
 * 2016) by a learner the site runs (its component allow-list decides which). The learner clips every example's
 * gradient to C, samples examples with probability q (Poisson) and noises each step's sum with N(0, (zC)²)
 * through {@link gaussianMechanism}; it reports (z, q, C, steps) in `meta.dp_sgd`. This filter composes the
 * RDP of the subsampled Gaussian mechanism over the reported steps (Mironov, Talwar, Zhang 2019) into the
 * job's budget at this site, writes the spending before the update leaves, and refuses with
 * E_DP_BUDGET_EXHAUSTED (audited) when the budget would be passed. The unit of privacy is one training example.
 *
 * It trusts the report of the site's own learner; it refuses an update that carries no report (E_DP_SGD_MISSING)
 * or one trained with weaker settings than the site's minimum (E_DP_SGD_WEAK). The model itself passes through
 * unchanged; `meta.dp_sgd` is replaced by `meta.dp_privacy_spent` (the report stays in the site's audit log).
 */
export function dpSgdAccountant(options: DpSgdAccountantOptions): Filter {
  const { budget, minNoiseMultiplier = 0, maxSamplingRate = 1 } = options;
  if (!(budget.maxEpsilon > 0)) throw new RangeError(`"budget.maxEpsilon" expected a number > 0, got ${budget.maxEpsilon}`);
  if (!(budget.delta > 0 && budget.delta < 1)) throw new RangeError(`"budget.delta" expected a number in (0, 1), got ${budget.delta}`);
  if (!(minNoiseMultiplier >= 0)) throw new RangeError(`"minNoiseMultiplier" expected a number >= 0, got ${minNoiseMultiplier}`);
  if (!(maxSamplingRate > 0 && maxSamplingRate <= 1)) throw new RangeError(`"maxSamplingRate" expected a number in (0, 1], got ${maxSamplingRate}`);

  async function apply(m: FLModel, ctx: FilterContext): Promise<FLModel> {
    checkAborted(ctx, 'dp-sgd');
    // A result without tensors carries metrics only (a validation result): no training is released.
    if (m.params.size === 0) return m;
    const raw = m.meta[DP_SGD_META];
    if (raw === undefined) {
      throw new DpError('E_DP_SGD_MISSING', `dp-sgd: the update of job "${ctx.job}" was not trained with DP-SGD (no ${DP_SGD_META} meta); this site requires it`);
    }
    const parsed = DpSgdReport.safeParse(raw);
    if (!parsed.success) throw new DpError('E_DP_BAD_META', `dp-sgd: the update's ${DP_SGD_META} meta is malformed (${parsed.error.issues[0]?.message ?? 'invalid'})`);
    const report = parsed.data;
    const { examples, ...mechanism } = report;
    if (report.noise_multiplier < minNoiseMultiplier || report.sampling_rate > maxSamplingRate) {
      throw new DpError(
        'E_DP_SGD_WEAK',
        `dp-sgd: trained with noise multiplier ${report.noise_multiplier} and sampling rate ${report.sampling_rate}; this site requires at least ${minNoiseMultiplier} and at most ${maxSamplingRate}`,
      );
    }
    // Each step noises every parameter once with the discrete Gaussian: count the sampler's documented error.
    const noised = report.steps * parameterCount(m);
    const { spent, dataset } = await chargeRelease(
      budget,
      { site: ctx.site, job: ctx.job, filter: 'dp-sgd', audit: ctx.audit },
      {
        rdp: (orders) => rdp({ noiseMultiplier: report.noise_multiplier, samplingRate: report.sampling_rate, orders }).map((v) => v * report.steps),
        pureEpsilon: null,
        samplerEpsilon: noised * SAMPLER_EPSILON_PER_COORDINATE,
        samplerTv: noised * SAMPLER_TV_PER_COORDINATE,
      },
    );
    ctx.audit?.({
      action: 'dp_sgd_accounted',
      job: ctx.job,
      msg: `dp-sgd: ${report.steps} steps at noise multiplier ${report.noise_multiplier}, sampling rate ${report.sampling_rate}; epsilon spent ${spent.epsilon.toPrecision(4)} of ${spent.maxEpsilon}`,
      data: { filter: 'dp-sgd', round: ctx.round, ...mechanism, ...(examples === undefined ? {} : { examples }), ...spentJson(spent, dataset) },
    });
    // The learner's report stays at the site (its audit line above): the update leaves with what was spent, not with
    // the run's parameters (a report with `examples` would tell the server the site's row count).
    const { [DP_SGD_META]: _report, ...kept } = structuredClone(m.meta);
    const meta: Record<string, JsonValue> = { ...kept, [DP_SPENT_META]: spentJson(spent, dataset) };
    const out: FLModel = { params: m.params, kind: m.kind, meta };
    if (m.metrics !== undefined) out.metrics = { ...m.metrics };
    return out;
  }

  return Object.freeze({ name: 'dp-sgd', apply });
}
