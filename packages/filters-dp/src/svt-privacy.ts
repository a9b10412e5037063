import { DpError, META, tensor, type Filter, type FilterContext, type FLModel, type JsonValue, type Tensor } from '@flare/core';
import { discreteLaplace } from './discrete-laplace.js';
import { chargeRelease, DP_SPENT_META, spentJson, type PrivacyBudget, type PrivacySpent } from './budget.js';
import { cryptoRandomSource, WordStream, type DpRandomSource } from './random-source.js';
import { checkAborted, floatTensors, numSteps, sameKind } from './update-checks.js';

/**
 * Options of {@link svtPrivacy}: FLARE's SVTPrivacy arguments (NVFlare app_common/filters/svt_privacy.py) with
 * the same defaults, in camel case.
 */
export interface SvtPrivacyOptions {
  /** Fraction of the values to release, in [0, 1]. Default 0.1. */
  readonly fraction?: number;
  /** ε of the selection phase (threshold + queries), > 0. Default 0.1. */
  readonly epsilon?: number;
  /** FLARE's legacy release-noise control: without `epsilonRelease`, the release phase costs nUpload·noiseVar. Default 0.1. */
  readonly noiseVar?: number;
  /** Values are clipped to ±gamma before the queries and the release, > 0. Default 1e-5. */
  readonly gamma?: number;
  /** The threshold before noise. Default 1e-6. */
  readonly tau?: number;
  /** Sample the released values with replacement among the selected ones. Default true (FLARE's). */
  readonly replace?: boolean;
  /** ε of the threshold noise; without it FLARE's ratio 1 : (2c)^(2/3) splits `epsilon`. */
  readonly epsilonThreshold?: number;
  /** ε of the query noise; the rest of `epsilon` when only one of the two is given. */
  readonly epsilonQuery?: number;
  /** ε of the release phase. */
  readonly epsilonRelease?: number;
  /** FLARE's data_kinds: the model kinds to filter; others pass unchanged. Default both. */
  readonly kinds?: ReadonlyArray<FLModel['kind']>;
  /** Enforce a per-job privacy budget at this site (pure-DP releases composed by RDP and by summation). */
  readonly budget?: PrivacyBudget;
  /** Tests only: a deterministic random source. Leave unset (the default is the OS CSPRNG). */
  readonly random?: DpRandomSource;
}

/** FLARE's meta key for the per-call SVT ledger entry. */
export const SVT_BUDGET_META = 'svt_privacy_budget';
/** FLARE's meta key for the cumulative SVT ledger of the job. */
export const SVT_ACCOUNTANT_META = 'svt_privacy_accountant';

/** The randomness SVT consumes, behind an interface so tests can replay FLARE's stubbed draws. Internal. */
export interface SvtNoise {
  /** centre + Laplace(scale), on a grid (discrete Laplace, see discrete-laplace.ts). */
  laplace(centre: number, scale: number): number;
  /** True with probability P(response + Laplace(scale) >= threshold). */
  exceeds(response: number, threshold: number, scale: number): boolean;
  /** A uniform integer in [0, n). */
  below(n: number): number;
}

/** The SVT noise from a word stream. Internal. */
function streamNoise(rs: WordStream): SvtNoise {
  return {
    laplace: (centre, scale) => discreteLaplace(centre, scale, rs),
    exceeds(response, threshold, scale) {
      // P(Lap(b) >= d) = e^(-d/b)/2 for d >= 0 and 1 - e^(d/b)/2 below: one exact Bernoulli draw per query, whose
      // probability is a float64 within a factor 1 ± 2^-51 of the true one. Only the bit leaves this function.
      const d = threshold - response;
      const p = d >= 0 ? 0.5 * Math.exp(-d / scale) : 1 - 0.5 * Math.exp(d / scale);
      return rs.bernoulli(p);
    },
    below: (n) => rs.below(n),
  };
}

/** The parameters {@link runSvt} needs (defaults applied). Internal. */
export interface SvtParams {
  readonly fraction: number;
  readonly epsilon: number;
  readonly noiseVar: number;
  readonly gamma: number;
  readonly tau: number;
  readonly replace: boolean;
  readonly epsilonThreshold?: number | undefined;
  readonly epsilonQuery?: number | undefined;
  readonly epsilonRelease?: number | undefined;
}

/** What one SVT call did. Internal. */
export interface SvtResult {
  /** The released values in the flat order (0 for values not released; scalars keep theirs). */
  readonly values: Float64Array;
  readonly nUpload: number;
  readonly passes: number;
  readonly epsilonThreshold: number;
  readonly epsilonQuery: number;
  readonly epsilonRelease: number;
}

/** FLARE's `_compute_epsilon_split`: explicit values, else the standard non-monotonic ratio 1 : (2c)^(2/3). */
export function epsilonSplit(epsilon: number, nUpload: number, epsilonThreshold?: number, epsilonQuery?: number): [number, number] {
  if (!(epsilon > 0)) throw new RangeError('"epsilon" must be > 0');
  if (!(nUpload > 0)) throw new RangeError('"nUpload" must be > 0');
  let thr = epsilonThreshold;
  let q = epsilonQuery;
  if (thr !== undefined && !(thr > 0)) throw new RangeError('"epsilonThreshold" must be > 0');
  if (q !== undefined && !(q > 0)) throw new RangeError('"epsilonQuery" must be > 0');
  if (thr === undefined && q === undefined) {
    // Lyu, Su, Li, "Understanding the Sparse Vector Technique for Differential Privacy" (VLDB 2017), Section 4.2:
    // ε1 : ε2 = 1 : (2c)^(2/3) for non-monotonic queries.
    const ratio = (2 * nUpload) ** (2 / 3);
    thr = epsilon / (1 + ratio);
    q = epsilon - thr;
  } else if (thr === undefined) {
    thr = epsilon - q!;
  } else if (q === undefined) {
    q = epsilon - thr;
  }
  if (!(thr! > 0 && q! > 0)) throw new RangeError('"epsilonThreshold" and "epsilonQuery" must both be > 0');
  // numpy.isclose(a, b): |a - b| <= 1e-8 + 1e-5·|b|
  if (!(Math.abs(thr! + q! - epsilon) <= 1e-8 + 1e-5 * Math.abs(epsilon))) throw new RangeError('"epsilonThreshold" + "epsilonQuery" must equal "epsilon"');
  return [thr!, q!];
}

/** FLARE's `_compute_release_epsilon`: the explicit value, else nUpload·noiseVar (the legacy release scale). */
export function releaseEpsilon(nUpload: number, noiseVar: number, epsilonRelease?: number): number {
  if (!(nUpload > 0)) throw new RangeError('"nUpload" must be > 0');
  if (epsilonRelease !== undefined) {
    if (!(epsilonRelease > 0)) throw new RangeError('"epsilonRelease" must be > 0');
    return epsilonRelease;
  }
  if (!(noiseVar > 0)) throw new RangeError('"noiseVar" must be > 0 when "epsilonRelease" is not given');
  return nUpload * noiseVar;
}

/** Bound on acceptance passes: it also bounds the query draws, which the sampler's ε slack counts. */
export const SVT_MAX_PASSES = 64;

/**
 * The sparse-vector selection and release over flat values w (already divided by the local steps); `scalar[i]`
 * marks values of scalar tensors, which can be selected but are released unchanged (FLARE's passthrough).
 *
 * FLARE's algorithm with one deliberate difference: candidates are queried in a uniformly random order and the
 * scan stops at the nUpload-th value above the noisy threshold, the cutoff of Lyu et al. 2017 Algorithm 1, so the
 * selection really costs ε_threshold + ε_query. (FLARE scans whole passes and may accept more than nUpload
 * values before subsampling, which that analysis does not cover.) With `replace`, the released values are drawn
 * with replacement among the nUpload selected ones. Internal.
 *
 * @throws DpError E_DP_SVT_STALLED after {@link SVT_MAX_PASSES} passes.
 */
export function runSvt(w: Float64Array, scalar: Uint8Array, p: SvtParams, noise: SvtNoise): SvtResult {
  const total = w.length;
  const values = new Float64Array(total);
  const nUpload = Math.min(Math.ceil(total * p.fraction), total);
  if (nUpload <= 0) {
    for (let i = 0; i < total; i++) if (scalar[i] === 1) values[i] = w[i]!;
    return { values, nUpload: 0, passes: 0, epsilonThreshold: 0, epsilonQuery: 0, epsilonRelease: 0 };
  }
  const [eThr, eQuery] = epsilonSplit(p.epsilon, nUpload, p.epsilonThreshold, p.epsilonQuery);
  const eRelease = releaseEpsilon(nUpload, p.noiseVar, p.epsilonRelease);
  const g = p.gamma;
  const clip = (v: number) => Math.min(g, Math.max(-g, v));
  // Sensitivity of |clip(w_i)| is gamma; of a released clip(w_i), 2·gamma: FLARE's scales.
  const threshold = noise.laplace(p.tau, g / eThr);
  const queryScale = (2 * g * nUpload) / eQuery;
  const releaseScale = (2 * g * nUpload) / eRelease;

  // A random query order fixed before any data is looked at (Fisher-Yates).
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  for (let i = total - 1; i > 0; i--) {
    const j = noise.below(i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  const accepted = new Uint32Array(nUpload);
  let count = 0;
  let remaining = total;
  let passes = 0;
  while (count < nUpload) {
    if (passes === SVT_MAX_PASSES) {
      throw new DpError('E_DP_SVT_STALLED', `svt-privacy: ${count} of ${nUpload} values selected after ${SVT_MAX_PASSES} passes`);
    }
    passes++;
    let keep = 0;
    let i = 0;
    for (; i < remaining && count < nUpload; i++) {
      const idx = order[i]!;
      if (noise.exceeds(Math.abs(clip(w[idx]!)), threshold, queryScale)) accepted[count++] = idx;
      else order[keep++] = idx;
    }
    for (; i < remaining; i++) order[keep++] = order[i]!;
    remaining = keep;
  }
  let selected: Uint32Array = accepted;
  if (p.replace) {
    const chosen = new Uint8Array(total);
    const picks: number[] = [];
    for (let k = 0; k < nUpload; k++) {
      const idx = accepted[noise.below(nUpload)]!;
      if (chosen[idx] === 0) {
        chosen[idx] = 1;
        picks.push(idx);
      }
    }
    selected = Uint32Array.from(picks);
  }
  for (let i = 0; i < total; i++) if (scalar[i] === 1) values[i] = w[i]!;
  for (const idx of selected) {
    if (scalar[idx] === 1) continue;
    values[idx] = noise.laplace(clip(w[idx]!), releaseScale);
  }
  return { values, nUpload, passes, epsilonThreshold: eThr, epsilonQuery: eQuery, epsilonRelease: eRelease };
}

// Multiplicative error of one discrete-Laplace draw (at most (2000 + 3)·2^-50 < 2^-39) and of one query's
// Bernoulli probability (2^-50), each counted twice (numerator and normaliser) into ε. See discrete-laplace.ts.
const LAPLACE_SLACK = 2 * 2 ** -39;
const QUERY_SLACK = 2 * 2 ** -50;

/**
 * FLARE's SVTPrivacy: the sparse-vector technique selects about `fraction` of the values (those whose clipped
 * magnitude plus Laplace noise passes a noisy threshold) and releases them clipped to ±gamma with Laplace noise;
 * every other value becomes 0. Values are divided by NUM_STEPS_CURRENT_ROUND first and multiplied back after.
 *
 * FORMAL PURE DP per call, with ε = ε_threshold + ε_query + ε_release, for updates whose values may change
 * arbitrarily (every value's sensitivity is bounded by the clipping to ±gamma). With FLARE's defaults the release
 * costs nUpload·noise_var, which is large for large models: read the ε in the meta before relying on it. Calls
 * compose: the meta carries FLARE's per-call and cumulative ledgers ({@link SVT_BUDGET_META},
 * {@link SVT_ACCOUNTANT_META}); with a `budget` the site also enforces a maximum ε per job. Scalar tensors pass
 * through unprotected (noted in the ledger, as in FLARE). Noise is discrete Laplace from the CSPRNG.
 *
 * Differences from FLARE: the selection stops at the nUpload-th accepted value in a random order (see
 * `runSvt`), and invalid arguments are refused instead of passing the update unfiltered.
 *
 * @throws DpError E_DP_UNSUPPORTED_DTYPE, E_DP_NON_FINITE, E_DP_BAD_META, E_DP_SVT_STALLED,
 * E_DP_BUDGET_EXHAUSTED, E_DP_BUDGET_CORRUPT, E_DP_BUDGET_WRITE, E_DP_ABORTED (from `apply`); RangeError for bad options.
 * @example
 * ```ts
 * const filter = svtPrivacy({ fraction: 0.1, epsilon: 0.1, noiseVar: 0.1, gamma: 1e-5, tau: 1e-6 });
 * ```
 */
export function svtPrivacy(options: SvtPrivacyOptions = {}): Filter {
  const p: SvtParams = {
    fraction: options.fraction ?? 0.1,
    epsilon: options.epsilon ?? 0.1,
    noiseVar: options.noiseVar ?? 0.1,
    gamma: options.gamma ?? 1e-5,
    tau: options.tau ?? 1e-6,
    replace: options.replace ?? true,
    epsilonThreshold: options.epsilonThreshold,
    epsilonQuery: options.epsilonQuery,
    epsilonRelease: options.epsilonRelease,
  };
  if (!(p.fraction >= 0 && p.fraction <= 1)) throw new RangeError(`"fraction" expected a number in [0, 1], got ${p.fraction}`);
  if (!(p.gamma > 0 && Number.isFinite(p.gamma))) throw new RangeError(`"gamma" expected a finite number > 0, got ${p.gamma}`);
  if (!Number.isFinite(p.tau)) throw new RangeError(`"tau" expected a finite number, got ${p.tau}`);
  // Validate the split now when it does not depend on the model's size (it does not when epsilons are explicit).
  epsilonSplit(p.epsilon, 1, p.epsilonThreshold, p.epsilonQuery);
  if (p.epsilonRelease === undefined && !(p.noiseVar > 0)) throw new RangeError('"noiseVar" must be > 0 when "epsilonRelease" is not given');
  if (p.epsilonRelease !== undefined && !(p.epsilonRelease > 0)) throw new RangeError('"epsilonRelease" must be > 0');
  const kinds = new Set(options.kinds ?? ['diff', 'full']);
  const budget = options.budget;
  const rs = new WordStream(options.random ?? cryptoRandomSource);
  const noise = streamNoise(rs);
  // FLARE's in-memory cumulative ledger, per job here (FLARE: per filter instance, reset at START_RUN).
  const ledgers = new Map<string, { epsilon: number; calls: number }>();

  async function apply(m: FLModel, ctx: FilterContext): Promise<FLModel> {
    if (!kinds.has(m.kind)) return m;
    const tensors = floatTensors(m, 'svt-privacy');
    const steps = numSteps(m, 'svt-privacy');
    checkAborted(ctx, 'svt-privacy');
    // FLARE flattens in sorted name order.
    const sorted = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let total = 0;
    for (const [, t] of sorted) total += t.data.length;
    const keep = () => ({ params: new Map(tensors.map(([n, t]) => [n, tensor(t.data.slice(), t.shape, t.dtype)] as const)), kind: m.kind, meta: structuredClone(m.meta) });
    if (total === 0) return { ...keep(), ...(m.metrics === undefined ? {} : { metrics: { ...m.metrics } }) };
    const w = new Float64Array(total);
    const scalar = new Uint8Array(total);
    let o = 0;
    let hasScalar = false;
    for (const [name, t] of sorted) {
      const isScalar = t.shape.length === 0;
      hasScalar ||= isScalar;
      for (let i = 0; i < t.data.length; i++) {
        const v = t.data[i]! / steps;
        if (!Number.isFinite(v)) throw new DpError('E_DP_NON_FINITE', `svt-privacy: tensor "${name}" holds NaN or infinite values`);
        scalar[o] = isScalar ? 1 : 0;
        w[o++] = v;
      }
    }
    const r = runSvt(w, scalar, p, noise);

    const params = new Map<string, Tensor>();
    const meta: Record<string, JsonValue> = structuredClone(m.meta);
    o = 0;
    const outByName = new Map<string, Tensor>();
    for (const [name, t] of sorted) {
      const out = sameKind(t.data);
      for (let i = 0; i < t.data.length; i++, o++) out[i] = scalar[o] === 1 ? t.data[i]! : r.values[o]! * steps;
      outByName.set(name, tensor(out, t.shape, t.dtype));
    }
    for (const [name] of tensors) params.set(name, outByName.get(name)!);

    if (r.nUpload > 0) {
      const eTotal = r.epsilonThreshold + r.epsilonQuery + r.epsilonRelease;
      let spent: PrivacySpent | undefined;
      let dataset: string | undefined;
      if (budget !== undefined) {
        const slack = LAPLACE_SLACK * (1 + r.nUpload) + QUERY_SLACK * SVT_MAX_PASSES * total;
        ({ spent, dataset } = await chargeRelease(budget, { site: ctx.site, job: ctx.job, filter: 'svt-privacy', audit: ctx.audit }, {
            // ε-DP implies (α, min(ε, αε²/2))-RDP (Bun & Steinke 2016, Proposition 3.3).
            rdp: (orders) => orders.map((a) => Math.min(eTotal, (a * eTotal * eTotal) / 2)),
            pureEpsilon: eTotal,
            samplerEpsilon: slack,
            samplerTv: 0,
          }));
      }
      const ledger = ledgers.get(ctx.job) ?? { epsilon: 0, calls: 0 };
      ledger.epsilon += eTotal;
      ledger.calls += 1;
      ledgers.set(ctx.job, ledger);
      const round = typeof m.meta[META.CURRENT_ROUND] === 'number' ? (m.meta[META.CURRENT_ROUND] as number) : ctx.round;
      const perCall: Record<string, JsonValue> = {
        accountant: 'pure_dp_sum',
        scope: 'filter-level',
        delta: 0,
        round,
        epsilon_total: eTotal,
        epsilon_threshold: r.epsilonThreshold,
        epsilon_query: r.epsilonQuery,
        epsilon_release: r.epsilonRelease,
        n_upload: r.nUpload,
        acceptance_passes: r.passes,
        has_scalar_passthrough: hasScalar,
      };
      const cumulative: Record<string, JsonValue> = { accountant: 'pure_dp_sum', scope: 'filter-level', delta: 0, epsilon_total: ledger.epsilon, calls: ledger.calls, latest_round: round };
      if (hasScalar) {
        perCall['note'] = 'scalar passthrough is not noise-protected by the SVT accountant.';
        cumulative['note'] = 'scalar passthrough is not included in the SVT accountant guarantee.';
      }
      meta[SVT_BUDGET_META] = perCall;
      meta[SVT_ACCOUNTANT_META] = cumulative;
      if (spent !== undefined) meta[DP_SPENT_META] = spentJson(spent, dataset);
      ctx.audit?.({
        action: 'dp_svt_applied',
        job: ctx.job,
        msg: `svt-privacy: released ${r.nUpload} of ${total} values in ${r.passes} passes; call epsilon ${eTotal.toPrecision(4)}, cumulative ${ledger.epsilon.toPrecision(4)} (pure DP)`,
        data: { filter: 'svt-privacy', round: ctx.round, epsilon_total: ledger.epsilon, epsilon_call: eTotal, ...(spent === undefined ? {} : spentJson(spent, dataset)) },
      });
    }
    const result: FLModel = { params, kind: m.kind, meta };
    if (m.metrics !== undefined) result.metrics = { ...m.metrics };
    return result;
  }

  return Object.freeze({ name: 'svt-privacy', apply });
}
