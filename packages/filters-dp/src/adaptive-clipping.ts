/** Adaptive clipping of gaussian-dp, after Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning with Adaptive Clipping" (NeurIPS 2021). */
export interface AdaptiveClipping {
  /** γ: the fraction of updates that should end up unclipped (the quantile the clip norm tracks), in (0, 1). Default 0.5 (the paper's). */
  readonly targetQuantile?: number;
  /** η_C: the step of the geometric update, > 0. Default 0.2 (the paper's). */
  readonly learningRate?: number;
  /**
   * σ_b: standard deviation of the Gaussian noise on the site's clipped/unclipped bit, > 0. Required: with one
   * site's single bit per round there is no default that is both useful and cheap in privacy (see docs/privacy.md).
   */
  readonly bitNoise: number;
}

/** Parameters of {@link nextClipNorm}. */
export interface ClipNormStep {
  /** The clip norm used this round, C_t > 0. */
  readonly clipNorm: number;
  /** The noised fraction of updates that were not clipped (b̃_t; one site: its noised 0/1 bit). */
  readonly unclippedFraction: number;
  readonly targetQuantile: number;
  readonly learningRate: number;
}

/**
 * The geometric clip-norm update of Andrew et al. 2021 (Algorithm 1, line "C ← C · exp(−η_C (b̄ − γ))"), with
 * b̄ the fraction of updates whose norm was at most C. The sign matters: when every update was clipped (b̄ = 0)
 * the clip norm grows by e^(η_C γ); when none was (b̄ = 1) it shrinks by e^(−η_C (1 − γ)). (One widely copied
 * implementation has the sign inverted, which drives C to zero exactly when it should grow.)
 *
 * @throws RangeError for a non-positive or non-finite clip norm or learning rate, or a quantile outside (0, 1).
 * @example
 * ```ts
 * nextClipNorm({ clipNorm: 1, unclippedFraction: 0, targetQuantile: 0.5, learningRate: 0.2 }); // e^0.1 ≈ 1.105
 * ```
 */
export function nextClipNorm({ clipNorm, unclippedFraction, targetQuantile, learningRate }: ClipNormStep): number {
  if (!(clipNorm > 0 && Number.isFinite(clipNorm))) throw new RangeError(`"clipNorm" expected a finite number > 0, got ${clipNorm}`);
  if (!(learningRate > 0 && Number.isFinite(learningRate))) throw new RangeError(`"learningRate" expected a finite number > 0, got ${learningRate}`);
  if (!(targetQuantile > 0 && targetQuantile < 1)) throw new RangeError(`"targetQuantile" expected a number in (0, 1), got ${targetQuantile}`);
  if (!Number.isFinite(unclippedFraction)) throw new RangeError(`"unclippedFraction" expected a finite number, got ${unclippedFraction}`);
  return clipNorm * Math.exp(-learningRate * (unclippedFraction - targetQuantile));
}

/**
 * The noise multiplier that accounts one round of gaussian-dp at one site: the update (L2 sensitivity C under
 * add/remove of the site's data, 2C under replacement, noise zC) and, with adaptive clipping, the site's bit
 * (sensitivity 1, noise σ_b) released together are one Gaussian mechanism of sensitivity
 * sqrt((κ/z)² + σ_b^-2) in noise units, κ = 1 or 2 (the combination of Andrew et al. 2021, Section 3, without
 * the centring gain, which needs many clients per round). Internal.
 */
export function effectiveNoiseMultiplier(z: number, adjacency: 'add-remove' | 'replace', bitNoise: number | undefined): number {
  const kappa = adjacency === 'replace' ? 2 : 1;
  const s2 = (kappa / z) ** 2 + (bitNoise === undefined ? 0 : 1 / (bitNoise * bitNoise));
  return 1 / Math.sqrt(s2);
}
