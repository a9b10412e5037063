import { DpError, tensor, type Filter, type FilterContext, type FLModel, type FloatArray, type JsonValue, type Tensor } from '@flare/core';
import { effectiveNoiseMultiplier, nextClipNorm, type AdaptiveClipping } from './adaptive-clipping.js';
import { discreteGaussianInto, GAUSSIAN_GRID_STEPS, SAMPLER_EPSILON_PER_COORDINATE, SAMPLER_TV_PER_COORDINATE } from './discrete-gaussian.js';
import { chargeRelease, DP_SPENT_META, spentJson, type PrivacyBudget, type PrivacySpent } from './budget.js';
import { DEFAULT_DATASET } from './privacy-ledger.js';
import { cryptoRandomSource, WordStream, type DpRandomSource } from './random-source.js';
import { rdp } from './rdp.js';
import { checkAborted, floatTensors, sameKind, sumOfSquares } from './update-checks.js';

/** The meta key under which gaussian-dp records what it did (clip norm, noise, adaptive clipping), snake case. */
export const GAUSSIAN_DP_META = 'gaussian_dp';

/** A budget for gaussian-dp: {@link PrivacyBudget} plus what the accountant needs to know about rounds. */
export interface GaussianDpBudget extends PrivacyBudget {
  /**
   * Probability that this site takes part in a round, if the server samples sites independently (Poisson) and
   * the site trusts it to. Default 1: the site cannot verify the server's sampling, so it assumes every round
   * uses its data.
   */
  readonly samplingRate?: number;
  /**
   * What neighbouring means: 'add-remove' (default) compares the site's update with no contribution (an all-zero
   * update), the client-level DP of DP-FedAvg; 'replace' compares any two datasets of the site and doubles the
   * sensitivity (stronger statement, larger ε).
   */
  readonly adjacency?: 'add-remove' | 'replace';
}

/** Options of {@link gaussianDp}. */
export interface GaussianDpOptions {
  /** C: the update's L2 norm is clipped to at most C (the initial C with adaptive clipping), > 0. */
  readonly clipNorm: number;
  /** z: every coordinate gets Gaussian noise of standard deviation z·C, > 0. */
  readonly noiseMultiplier: number;
  /**
   * Clip each float tensor to C/√k (k tensors) instead of the whole update to C, so the global norm stays within C
   * (McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models", per-layer clipping).
   * Default false.
   */
  readonly perTensor?: boolean;
  /** Quantile-based adaptive clipping (Andrew et al. 2021); its bit's privacy cost is accounted. */
  readonly adaptive?: AdaptiveClipping;
  /** Enforce a per-job privacy budget at this site. Without it nothing is accounted or refused. */
  readonly budget?: GaussianDpBudget;
  /** Tests only: a deterministic random source. Leave unset (the default is the OS CSPRNG). */
  readonly random?: DpRandomSource;
}

// Clipping margin: the norm is computed in float64 with blocked summation (relative error < 1e-12 for any
// realistic size) and the centres c = x·(factor/g) carry one more rounding each; clipping to C/(1 + 1e-9) keeps
// the true clipped norm strictly below C whatever those errors are, at no measurable cost in utility.
const MARGIN = 1 + 1e-9;

function checkPositive(name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new RangeError(`"${name}" expected a finite number > 0, got ${String(v)}`);
  return v;
}

/**
 * Client-level DP-FedAvg at the site (McMahan et al. 2018): clips the update's L2 norm to C and adds Gaussian
 * noise of standard deviation z·C to every coordinate, drawn as a discrete Gaussian on a grid from the CSPRNG (no
 * floating-point artefacts; see the README). With a `budget`, each release is accounted by RDP (Mironov et al.
 * 2019) and persisted before the update leaves; a release that would pass the budget is refused with
 * E_DP_BUDGET_EXHAUSTED, audited, and the job stays refused at this site.
 *
 * The filter takes models of kind 'diff' with float tensors only, never mutates the input, and returns a new
 * model whose meta carries {@link GAUSSIAN_DP_META} and, with a budget, {@link DP_SPENT_META}.
 *
 * @throws DpError E_DP_MODEL_KIND, E_DP_UNSUPPORTED_DTYPE, E_DP_NON_FINITE, E_DP_BUDGET_EXHAUSTED,
 * E_DP_BUDGET_CORRUPT, E_DP_BUDGET_WRITE, E_DP_ABORTED (from `apply`); RangeError for bad options.
 * @example
 * ```ts
 * const filter = gaussianDp({
 *   clipNorm: 1, noiseMultiplier: 1.1,
 *   budget: { maxEpsilon: 8, delta: 1e-5, ledger: openPrivacyLedger(join(workspace, BUDGET_FOLDER), { site, audit: siteLog.append }) },
 * });
 * const released = await filter.apply(update, { site: 'hospital-a', job, round });
 * ```
 */
export function gaussianDp(options: GaussianDpOptions): Filter {
  const clipNorm = checkPositive('clipNorm', options.clipNorm);
  const z = checkPositive('noiseMultiplier', options.noiseMultiplier);
  const perTensor = options.perTensor ?? false;
  const adaptive = options.adaptive === undefined ? undefined : {
    targetQuantile: options.adaptive.targetQuantile ?? 0.5,
    learningRate: checkPositive('adaptive.learningRate', options.adaptive.learningRate ?? 0.2),
    bitNoise: checkPositive('adaptive.bitNoise', options.adaptive.bitNoise),
  };
  if (adaptive !== undefined && !(adaptive.targetQuantile > 0 && adaptive.targetQuantile < 1)) {
    throw new RangeError(`"adaptive.targetQuantile" expected a number in (0, 1), got ${adaptive.targetQuantile}`);
  }
  const budget = options.budget;
  const samplingRate = budget?.samplingRate ?? 1;
  const adjacency = budget?.adjacency ?? 'add-remove';
  if (budget !== undefined) {
    checkPositive('budget.maxEpsilon', budget.maxEpsilon);
    if (!(budget.delta > 0 && budget.delta < 1)) throw new RangeError(`"budget.delta" expected a number in (0, 1), got ${budget.delta}`);
    if (!(samplingRate > 0 && samplingRate <= 1)) throw new RangeError(`"budget.samplingRate" expected a number in (0, 1], got ${samplingRate}`);
    if (adjacency !== 'add-remove' && adjacency !== 'replace') throw new RangeError(`"budget.adjacency" expected 'add-remove' or 'replace', got ${String(adjacency)}`);
    if (typeof budget.ledger?.update !== 'function') throw new TypeError('"budget.ledger" expected a PrivacyLedger');
  }
  const zEff = effectiveNoiseMultiplier(z, adjacency, adaptive?.bitNoise);
  // One round's RDP, by order grid (records read from disk bring their own arrays: key by content).
  const rdpCache = new Map<string, number[]>();
  const rdpAt = (orders: readonly number[]) => {
    const key = orders.join(',');
    let v = rdpCache.get(key);
    if (v === undefined) {
      v = rdp({ noiseMultiplier: zEff, samplingRate, orders });
      if (rdpCache.size < 8) rdpCache.set(key, v);
    }
    return v;
  };
  const stream = new WordStream(options.random ?? cryptoRandomSource);
  // Adaptive clipping state per job when there is no ledger to keep it.
  const clipByJob = new Map<string, number>();

  async function apply(m: FLModel, ctx: FilterContext): Promise<FLModel> {
    // A result without tensors carries metrics only (a validation result): no weights are released.
    if (m.params.size === 0) return m;
    if (m.kind !== 'diff') throw new DpError('E_DP_MODEL_KIND', `gaussian-dp: the model is of kind '${m.kind}'; it clips and noises weight differences ('diff')`);
    const tensors = floatTensors(m, 'gaussian-dp');
    checkAborted(ctx, 'gaussian-dp');

    let c = clipNorm;
    if (adaptive !== undefined) {
      const stored = budget === undefined ? clipByJob.get(ctx.job) : (await budget.ledger.read(budget.dataset ?? DEFAULT_DATASET, ctx.job)).job.clipNorm;
      c = stored ?? clipNorm;
    }

    const squares = tensors.map(([, t]) => sumOfSquares(t.data));
    const totalSquares = squares.reduce((a, b) => a + b, 0);
    if (!Number.isFinite(totalSquares)) {
      const bad = tensors.find((_, i) => !Number.isFinite(squares[i]!))?.[0] ?? '?';
      throw new DpError('E_DP_NON_FINITE', `gaussian-dp: tensor "${bad}" holds NaN or infinite values`);
    }
    const norm = Math.sqrt(totalSquares);
    const perTensorClip = tensors.length === 0 ? c : c / Math.sqrt(tensors.length);
    const factors = tensors.map((_, i) => {
      const n = perTensor ? Math.sqrt(squares[i]!) : norm;
      const bound = perTensor ? perTensorClip : c;
      return n * MARGIN > bound ? bound / (n * MARGIN) : 1;
    });

    const sigma = z * c;
    const g = sigma / GAUSSIAN_GRID_STEPS;
    let coordinates = 0;
    for (const [, t] of tensors) coordinates += t.data.length;

    let noisyBit: number | undefined;
    let nextClip: number | undefined;
    if (adaptive !== undefined) {
      // Andrew et al. 2021: b = 1 when the update was not clipped; released only with noise σ_b.
      const bit = new Float64Array([norm <= c ? 1 : 0]);
      const bg = adaptive.bitNoise / GAUSSIAN_GRID_STEPS;
      discreteGaussianInto(bit, 1 / bg, bg, bit, stream);
      noisyBit = bit[0]!;
      nextClip = nextClipNorm({ clipNorm: c, unclippedFraction: noisyBit, targetQuantile: adaptive.targetQuantile, learningRate: adaptive.learningRate });
    }

    let spent: PrivacySpent | undefined;
    let dataset: string | undefined;
    const noised = coordinates + (adaptive === undefined ? 0 : 1);
    if (budget !== undefined) {
      const charged = await chargeRelease(
        budget,
        { site: ctx.site, job: ctx.job, filter: 'gaussian-dp', audit: ctx.audit },
        {
          rdp: rdpAt,
          pureEpsilon: null,
          samplerEpsilon: noised * SAMPLER_EPSILON_PER_COORDINATE,
          samplerTv: noised * SAMPLER_TV_PER_COORDINATE,
        },
        nextClip === undefined ? undefined : () => nextClip!,
      );
      spent = charged.spent;
      dataset = charged.dataset;
    } else if (nextClip !== undefined) {
      clipByJob.set(ctx.job, nextClip);
    }

    const params = new Map<string, Tensor>();
    tensors.forEach(([name, t], i) => {
      checkAborted(ctx, 'gaussian-dp');
      const out: FloatArray = sameKind(t.data);
      discreteGaussianInto(t.data, factors[i]! / g, g, out, stream);
      params.set(name, tensor(out, t.shape, t.dtype));
    });

    const info: Record<string, JsonValue> = {
      clip_norm: c,
      noise_multiplier: z,
      noise_std: sigma,
      per_tensor: perTensor,
      coordinates,
    };
    if (adaptive !== undefined) {
      info['adaptive'] = { noisy_unclipped: noisyBit!, next_clip_norm: nextClip!, target_quantile: adaptive.targetQuantile, learning_rate: adaptive.learningRate, bit_noise: adaptive.bitNoise };
    }
    const meta: Record<string, JsonValue> = { ...structuredClone(m.meta), [GAUSSIAN_DP_META]: info };
    if (spent !== undefined) meta[DP_SPENT_META] = spentJson(spent, dataset);
    ctx.audit?.({
      action: 'dp_noise_added',
      job: ctx.job,
      msg: `gaussian-dp: clipped to ${c.toPrecision(4)} and noised ${coordinates} coordinates with std ${sigma.toPrecision(4)}${spent === undefined ? '' : `; epsilon spent ${spent.epsilon.toPrecision(4)} of ${spent.maxEpsilon}`}`,
      data: { filter: 'gaussian-dp', round: ctx.round, clip_norm: c, noise_multiplier: z, ...(spent === undefined ? {} : spentJson(spent, dataset)) },
    });
    const result: FLModel = { params, kind: 'diff', meta };
    if (m.metrics !== undefined) result.metrics = { ...m.metrics };
    return result;
  }

  return Object.freeze({ name: 'gaussian-dp', apply });
}
