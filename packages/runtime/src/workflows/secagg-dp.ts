import { SecAggError, type AuditHook } from '@flare/core';
import { BUDGET_ORDERS, chargeRelease, epsilonFromRdp, type PrivacyLedger, type PrivacySpent } from '@flare/filters-dp';
import { distributedDpPrivacy, planSecAggRound, type RoundConfig } from '@flare/secagg';

/** A site's own budget for distributed DP: its privacy ledger (shared with its DP filters) and its cap. */
export interface SecAggBudget {
  /** The site's privacy ledger (`openPrivacyLedger` under its workspace): every DP release of the site composes in it. */
  readonly ledger: PrivacyLedger;
  /** The most ε the site's dataset may spend, all jobs together. */
  readonly maxEpsilon: number;
  /** δ at which the site states ε (default 1e-5). */
  readonly delta?: number;
  /** The ledger's dataset (default `default`). */
  readonly dataset?: string;
}

/** What the job asks of distributed DP (`workflow_args.dp`). */
export interface SecAggDpArgs {
  /** ε the whole job may spend at each site (all its rounds), at `delta`. */
  readonly epsilon: number;
  readonly delta: number;
  /** Honest sites the noise counts on in any sum (default: what the plan guarantees). */
  readonly min_honest?: number | undefined;
}

/** ε of `rounds` rounds of a configuration's distributed discrete Gaussian at `delta`. */
export function secAggEpsilon(config: RoundConfig, rounds: number, delta: number): number {
  const rdp = distributedDpPrivacy(config).rdp(BUDGET_ORDERS);
  return epsilonFromRdp({ orders: BUDGET_ORDERS, rdp: rdp.map((r) => r * rounds), delta }).epsilon;
}

/**
 * The smallest noise multiplier (noise on the sum / clip) whose `rounds` rounds spend at most `dp.epsilon` at
 * `dp.delta`, by bisection over the planned configuration (the plan fixes the encoding and each site's share of
 * the noise); returns the configuration planned with it.
 *
 * @throws SecAggError E_SECAGG_PARAMS when even a multiplier of 10^4 spends more (the ring is too small for the
 *   noise: more bits, or a larger epsilon).
 */
export function planDpRound(plan: (multiplier: number) => RoundConfig, rounds: number, dp: SecAggDpArgs): RoundConfig {
  const spends = (m: number): number => secAggEpsilon(plan(m), rounds, dp.delta);
  let hi = 1;
  while (spends(hi) > dp.epsilon) {
    hi *= 2;
    if (hi > 1e4) throw new SecAggError('E_SECAGG_PARAMS', `no noise multiplier up to 10^4 keeps ${rounds} rounds within epsilon ${dp.epsilon} at delta ${dp.delta}`);
  }
  let lo = hi / 2;
  if (spends(lo) <= dp.epsilon) lo = 0;
  // 40 halvings: the multiplier to 2^-40 of its range; `hi` always spends at most the target.
  for (let i = 0; i < 40 && hi - lo > 1e-9 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (mid > 0 && spends(mid) <= dp.epsilon) hi = mid;
    else lo = mid;
  }
  return plan(hi);
}

/** The plan function {@link planDpRound} bisects over, from the round's inputs. */
export function dpPlanner(base: Omit<Parameters<typeof planSecAggRound>[0], 'encoding'> & { dimension: number; clip: number }, honestSites: number | undefined): (multiplier: number) => RoundConfig {
  const { dimension, clip, ...rest } = base;
  return (multiplier) =>
    planSecAggRound({ ...rest, encoding: { dimension, clip, noise: { multiplier, ...(honestSites === undefined ? {} : { honestSites }) } } }).config;
}

/**
 * Charges one round of distributed DP to the site's own ledger before its masked input leaves: the site computes
 * the cost itself from the configuration it checked (never from a figure the server states), and the ledger
 * refuses (E_DP_BUDGET_EXHAUSTED) a round that would pass the site's cap.
 */
export async function chargeSecAggRound(budget: SecAggBudget, where: { site: string; job: string; audit?: AuditHook }, config: RoundConfig): Promise<PrivacySpent> {
  const privacy = distributedDpPrivacy(config);
  const { spent } = await chargeRelease(
    { ledger: budget.ledger, maxEpsilon: budget.maxEpsilon, delta: budget.delta ?? 1e-5, ...(budget.dataset === undefined ? {} : { dataset: budget.dataset }) },
    { site: where.site, job: where.job, filter: 'secagg-distributed-dp', audit: where.audit },
    // The exact sampler (exactDiscreteGaussian) has no sampler error to count.
    { rdp: (orders) => privacy.rdp(orders), pureEpsilon: null, samplerEpsilon: 0, samplerTv: 0 },
  );
  return spent;
}
