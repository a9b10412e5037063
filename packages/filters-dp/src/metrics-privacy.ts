import { DpError, type Filter, type FilterContext, type FLModel, type JsonValue } from '@flare/core';
import { chargeRelease, DP_SPENT_META, spentJson, type PrivacyBudget, type PrivacySpent } from './budget.js';
import { discreteGaussianInto, GAUSSIAN_GRID_STEPS, SAMPLER_EPSILON_PER_COORDINATE, SAMPLER_TV_PER_COORDINATE } from './discrete-gaussian.js';
import { cryptoRandomSource, WordStream, type DpRandomSource } from './random-source.js';
import { rdp } from './rdp.js';
import { checkAborted } from './update-checks.js';

/** How one metric is noised: its sensitivity, and the range it is clipped to first (which makes the sensitivity true). */
export interface MetricNoise {
  /**
   * How much the metric can change when the unit of privacy changes (one record for record-level DP, the site's
   * data for site-level DP), after clipping to [min, max]: e.g. an accuracy over n validation records changes by
   * at most 1/n when one record changes. > 0.
   */
  readonly sensitivity: number;
  /** Lower end of the clipping range (default: no lower clip). */
  readonly min?: number;
  /** Upper end of the clipping range (default: no upper clip). */
  readonly max?: number;
}

/** Options of {@link metricsPrivacy}. */
export interface MetricsPrivacyOptions {
  /** The metric names that may leave the site; every other metric is removed. */
  readonly allow: readonly string[];
  /**
   * Gaussian noise on the allowed metrics: each metric gets N(0, (noiseMultiplier · sensitivity)²), drawn as a
   * discrete Gaussian like gaussian-dp. Every allowed metric must be listed in `metrics`. With a budget, each
   * release of metrics is charged to the site's privacy ledger (k metrics at noise multiplier z cost the RDP of
   * one Gaussian mechanism at z/√k).
   */
  readonly gaussian?: {
    readonly noiseMultiplier: number;
    readonly metrics: Readonly<Record<string, MetricNoise>>;
    readonly budget?: PrivacyBudget;
  };
  /** Tests only: a deterministic random source. Leave unset (the default is the OS CSPRNG). */
  readonly random?: DpRandomSource;
}

/** The meta key under which the filter says what it did: `{ removed, noised, noise_multiplier }`. */
export const METRICS_PRIVACY_META = 'metrics_privacy';

const MAX_METRICS = 1024;

/**
 * A filter for what leaves a site besides the model: the metrics of a result (training and validation alike).
 * Only metrics on `allow` pass; with `gaussian`, each is clipped to its range and noised, and with a budget the
 * noise is charged to the site's privacy ledger like any other release from the dataset. Tensors and other meta
 * pass unchanged. A model without metrics passes unchanged (and is not charged).
 *
 * @throws RangeError for bad options (an allowed metric without noise settings, a sensitivity <= 0, ...);
 *   DpError E_DP_NON_FINITE for a NaN or infinite metric that would be released, E_DP_BUDGET_EXHAUSTED when
 *   the dataset's budget is spent.
 * @example
 * ```ts
 * const filter = metricsPrivacy({ allow: ['accuracy'], gaussian: { noiseMultiplier: 4, metrics: { accuracy: { sensitivity: 1 / 500, min: 0, max: 1 } }, budget } });
 * ```
 */
export function metricsPrivacy(options: MetricsPrivacyOptions): Filter {
  const allow = new Set(options.allow);
  if (!Array.isArray(options.allow) || options.allow.some((n) => typeof n !== 'string' || n.length === 0) || allow.size > MAX_METRICS) {
    throw new RangeError(`"allow" expected a list of at most ${MAX_METRICS} metric names`);
  }
  const gaussian = options.gaussian;
  const noise = new Map<string, MetricNoise>();
  let z = 0;
  if (gaussian !== undefined) {
    z = gaussian.noiseMultiplier;
    if (!(z > 0 && Number.isFinite(z))) throw new RangeError(`"gaussian.noiseMultiplier" expected a finite number > 0, got ${z}`);
    for (const name of allow) {
      const m = gaussian.metrics[name];
      if (m === undefined) throw new RangeError(`metric "${name}" is allowed but has no noise settings in "gaussian.metrics"`);
      if (!(m.sensitivity > 0 && Number.isFinite(m.sensitivity))) throw new RangeError(`metric "${name}": "sensitivity" expected a finite number > 0`);
      if (m.min !== undefined && m.max !== undefined && !(m.min < m.max)) throw new RangeError(`metric "${name}": "min" must be below "max"`);
      noise.set(name, m);
    }
    for (const name of Object.keys(gaussian.metrics)) if (!allow.has(name)) throw new RangeError(`metric "${name}" has noise settings but is not allowed`);
    const b = gaussian.budget;
    if (b !== undefined) {
      if (!(b.maxEpsilon > 0)) throw new RangeError(`"budget.maxEpsilon" expected a number > 0, got ${b.maxEpsilon}`);
      if (!(b.delta > 0 && b.delta < 1)) throw new RangeError(`"budget.delta" expected a number in (0, 1), got ${b.delta}`);
      if (typeof b.ledger?.update !== 'function') throw new TypeError('"budget.ledger" expected a PrivacyLedger');
    }
  }
  const stream = new WordStream(options.random ?? cryptoRandomSource);

  async function apply(m: FLModel, ctx: FilterContext): Promise<FLModel> {
    checkAborted(ctx, 'metrics-privacy');
    if (m.metrics === undefined) return m;
    const kept: Array<[string, number]> = [];
    const removed: string[] = [];
    for (const [name, value] of Object.entries(m.metrics)) {
      if (allow.has(name)) kept.push([name, value]);
      else removed.push(name);
    }
    const bad = kept.find(([, v]) => typeof v !== 'number' || !Number.isFinite(v));
    if (bad !== undefined) throw new DpError('E_DP_NON_FINITE', `metrics-privacy: metric "${bad[0]}" is NaN or infinite`);

    let spent: PrivacySpent | undefined;
    let dataset: string | undefined;
    const budget = gaussian?.budget;
    if (gaussian !== undefined && budget !== undefined && kept.length > 0) {
      const k = kept.length;
      ({ spent, dataset } = await chargeRelease(budget, { site: ctx.site, job: ctx.job, filter: 'metrics-privacy', audit: ctx.audit }, {
        // k Gaussian mechanisms each at noise multiplier z relative to its own sensitivity compose to one at z/√k.
        rdp: (orders) => rdp({ noiseMultiplier: z / Math.sqrt(k), samplingRate: 1, orders }),
        pureEpsilon: null,
        samplerEpsilon: k * SAMPLER_EPSILON_PER_COORDINATE,
        samplerTv: k * SAMPLER_TV_PER_COORDINATE,
      }));
    }
    const metrics: Record<string, number> = {};
    for (const [name, value] of kept) {
      const n = noise.get(name);
      if (n === undefined) {
        metrics[name] = value;
        continue;
      }
      const clipped = Math.min(n.max ?? Infinity, Math.max(n.min ?? -Infinity, value));
      const g = (z * n.sensitivity) / GAUSSIAN_GRID_STEPS;
      const x = new Float64Array([clipped]);
      discreteGaussianInto(x, 1 / g, g, x, stream);
      metrics[name] = x[0]!;
    }
    const info: Record<string, JsonValue> = { removed: removed.length, noised: gaussian === undefined ? 0 : kept.length, ...(gaussian === undefined ? {} : { noise_multiplier: z }) };
    const meta: Record<string, JsonValue> = { ...structuredClone(m.meta), [METRICS_PRIVACY_META]: info };
    if (spent !== undefined) meta[DP_SPENT_META] = spentJson(spent, dataset);
    ctx.audit?.({
      action: 'metrics_filtered',
      job: ctx.job,
      msg: `metrics-privacy: ${kept.length} metrics leave the site${gaussian === undefined ? '' : ' with noise'}, ${removed.length} removed${spent === undefined ? '' : `; epsilon spent ${spent.epsilon.toPrecision(4)} of ${spent.maxEpsilon}`}`,
      data: { filter: 'metrics-privacy', round: ctx.round, released: kept.map(([n]) => n), removed, ...(spent === undefined ? {} : spentJson(spent, dataset)) },
    });
    return { params: m.params, kind: m.kind, meta, metrics };
  }

  return Object.freeze({ name: 'metrics-privacy', apply });
}
