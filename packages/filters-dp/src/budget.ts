import type { AuditHook, JsonValue } from '@flare/core';
import { DpError } from '@flare/core';
import { DEFAULT_DATASET, type LedgerEntry, type LedgerTotals, type PrivacyLedger } from './privacy-ledger.js';
import { DEFAULT_ORDERS, epsilonFromRdp } from './rdp.js';

/**
 * The orders a site's budget is accounted at: Opacus's defaults plus dp_accounting's large orders 128, 256, 512
 * and 1024, which give tighter ε when the noise is large (σ >= 4) and many rounds compose.
 */
export const BUDGET_ORDERS: readonly number[] = Object.freeze([...DEFAULT_ORDERS, 128, 256, 512, 1024]);

/**
 * A privacy budget a site enforces on one of its datasets, across every job that trains on it: a release is
 * refused when the dataset's composed spending would pass `maxEpsilon` at `delta`.
 */
export interface PrivacyBudget {
  /** The most ε the dataset may spend at this site, all jobs together, > 0. */
  readonly maxEpsilon: number;
  /** The δ at which ε is stated, in (0, 1); typically below 1 / (number of records at the site). */
  readonly delta: number;
  /** The site's privacy ledger (`openPrivacyLedger` under the site workspace). */
  readonly ledger: PrivacyLedger;
  /** Which of the site's datasets the releases come from (default `default`: one ledger for all the site's data). */
  readonly dataset?: string;
}

/** The privacy a site has spent on a dataset so far, as it travels in a result's meta ({@link DP_SPENT_META}). */
export interface PrivacySpent {
  /** ε spent on the dataset by every job so far, at `delta`. */
  readonly epsilon: number;
  readonly delta: number;
  readonly maxEpsilon: number;
  /** Releases from the dataset, all jobs together. */
  readonly releases: number;
  /** Which bound gave ε: RDP (Balle et al. 2020 conversion) or the plain sum of pure-DP releases. */
  readonly accountant: 'rdp' | 'pure_dp_sum';
}

/** The meta key under which DP filters put the site's {@link PrivacySpent} for the job, in snake case JSON. */
export const DP_SPENT_META = 'dp_privacy_spent';

/** The cost of one release, as the filters (and @flare/runtime's secure aggregation, for distributed DP) compute it. */
export interface ReleaseCost {
  /** RDP of this release at the record's orders. */
  readonly rdp: (orders: readonly number[]) => number[];
  /** ε when the release is pure ε-DP, else null. */
  readonly pureEpsilon: number | null;
  readonly samplerEpsilon: number;
  readonly samplerTv: number;
}

/**
 * ε spent according to a budget record, at `delta`: the RDP bound (Balle et al. 2020 conversion) or, when every
 * release was pure DP, the smaller of that and the plain sum of ε; plus the samplers' documented error (their
 * total-variation part is taken out of δ as samplerTv·(1 + e^ε) at the ε reached). Infinity when the samplers'
 * share leaves no δ.
 *
 * @example
 * ```ts
 * const { totals } = await ledger.read('default', job);
 * const { epsilon } = privacySpent(totals, { delta: 1e-5, maxEpsilon: 8 });
 * ```
 */
export function privacySpent(record: LedgerTotals | undefined, { delta, maxEpsilon }: { readonly delta: number; readonly maxEpsilon: number }): PrivacySpent {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`"delta" expected a number in (0, 1), got ${delta}`);
  if (!(maxEpsilon > 0)) throw new RangeError(`"maxEpsilon" expected a number > 0, got ${maxEpsilon}`);
  if (record === undefined || record.releases === 0) return { epsilon: 0, delta, maxEpsilon, releases: 0, accountant: 'rdp' };
  let epsilon = record.samplerTv === 0 ? rdpAt(record, delta) : rdpWithSamplerTv(record, delta);
  const pure = record.pureEpsilon !== null && record.pureEpsilon < epsilon;
  if (pure) epsilon = record.pureEpsilon!;
  return { epsilon: epsilon + record.samplerEpsilon, delta, maxEpsilon, releases: record.releases, accountant: pure ? 'pure_dp_sum' : 'rdp' };
}

function rdpAt(record: LedgerTotals, delta: number): number {
  return epsilonFromRdp({ orders: record.orders, rdp: record.rdp, delta }).epsilon;
}

/**
 * The RDP bound when the samplers may differ from the ideal Gaussian by total variation τ per release set: the
 * real mechanism is (ε, δ_rdp + τ(1 + e^ε))-DP whenever the ideal one is (ε, δ_rdp)-DP. The ε that fits the
 * whole δ is the least fixed point of g(ε) = ε_rdp(δ - τ(1 + e^ε)); g is increasing, so iterating from
 * ε_rdp(δ) climbs to it (two or three steps for any τ the samplers produce). Charging τ at the ε actually
 * reached, not at the budget's maximum, keeps large budgets usable: e^1000 would swallow any δ.
 */
function rdpWithSamplerTv(record: LedgerTotals, delta: number): number {
  let epsilon = rdpAt(record, delta);
  for (let i = 0; i < 64; i++) {
    const deltaRdp = delta - record.samplerTv * (1 + Math.exp(Math.min(epsilon, 709)));
    if (!(deltaRdp > 0)) return Infinity;
    const next = rdpAt(record, deltaRdp);
    if (next <= epsilon * (1 + 1e-12)) return Math.max(next, epsilon);
    epsilon = next;
  }
  return epsilon;
}

/** The JSON form of {@link PrivacySpent} for meta and audit data (snake case, FLARE's meta style), with the dataset. */
export function spentJson(spent: PrivacySpent, dataset?: string): Record<string, JsonValue> {
  return {
    epsilon: spent.epsilon,
    delta: spent.delta,
    max_epsilon: spent.maxEpsilon,
    releases: spent.releases,
    accountant: spent.accountant,
    ...(dataset === undefined ? {} : { dataset }),
  };
}

/** What a charge decided. */
export interface ChargeResult {
  readonly spent: PrivacySpent;
  /** The dataset charged. */
  readonly dataset: string;
  /** The adaptive clip norm stored for the job before this release (undefined when none was stored). */
  readonly clipNormBefore: number | undefined;
}

/**
 * Charges one release against the dataset's budget in the site's ledger, writing the new spending before the
 * caller releases anything (write-ahead: a crash after the write over-counts, never under-counts). Every job on
 * the dataset shares the budget. Refuses with E_DP_BUDGET_EXHAUSTED, marks the job exhausted and reports through
 * `audit` when the release would pass the budget or the job was already exhausted. `nextClipNorm`, when given,
 * stores the job's adaptive clipping state in the same entry. Used by this package's filters and by the runtime's
 * secure aggregation (distributed DP), so every DP release of a site composes in one ledger.
 *
 * @throws DpError E_DP_BUDGET_EXHAUSTED, and the ledger's E_DP_LEDGER_ROLLBACK, E_DP_BUDGET_CORRUPT, E_DP_BUDGET_WRITE.
 */
export async function chargeRelease(
  budget: PrivacyBudget,
  where: { readonly site: string; readonly job: string; readonly filter: string; readonly audit?: AuditHook | undefined },
  cost: ReleaseCost,
  nextClipNorm?: (before: number | undefined) => number,
): Promise<ChargeResult> {
  const { job, filter } = where;
  const dataset = budget.dataset ?? DEFAULT_DATASET;
  if (where.site !== budget.ledger.site) throw new TypeError(`the budget's ledger belongs to site "${budget.ledger.site}", not "${where.site}"`);
  const limits = { delta: budget.delta, maxEpsilon: budget.maxEpsilon };
  type Outcome = { readonly ok: true; readonly charge: ChargeResult } | { readonly ok: false; readonly spent: PrivacySpent; readonly wouldBe: number; readonly exhaustedBefore: boolean };
  const outcome = await budget.ledger.update<Outcome>(
    dataset,
    job,
    ({ totals, job: state }) => {
      const base: LedgerTotals = totals ?? { orders: BUDGET_ORDERS, rdp: BUDGET_ORDERS.map(() => 0), pureEpsilon: 0, samplerEpsilon: 0, samplerTv: 0, releases: 0 };
      const spentBefore = privacySpent(base, limits);
      if (state.exhausted) return { result: { ok: false, spent: spentBefore, wouldBe: spentBefore.epsilon, exhaustedBefore: true } };
      const add = cost.rdp(base.orders);
      const next: LedgerTotals = {
        orders: base.orders,
        rdp: base.rdp.map((r, i) => r + add[i]!),
        pureEpsilon: base.pureEpsilon === null || cost.pureEpsilon === null ? null : base.pureEpsilon + cost.pureEpsilon,
        samplerEpsilon: base.samplerEpsilon + cost.samplerEpsilon,
        samplerTv: base.samplerTv + cost.samplerTv,
        releases: base.releases + 1,
      };
      const spentAfter = privacySpent(next, limits);
      if (!(spentAfter.epsilon <= budget.maxEpsilon)) {
        const entry: LedgerEntry = { kind: 'exhausted', filter, totals: base };
        return { entry, result: { ok: false, spent: spentBefore, wouldBe: spentAfter.epsilon, exhaustedBefore: false } };
      }
      const clip = nextClipNorm?.(state.clipNorm);
      const entry: LedgerEntry = { kind: 'release', filter, totals: next, ...(clip === undefined ? {} : { clipNorm: clip }) };
      return { entry, result: { ok: true, charge: { spent: spentAfter, dataset, clipNormBefore: state.clipNorm } } };
    },
    where.audit,
  );
  if (outcome.ok) return outcome.charge;
  const { spent, wouldBe } = outcome;
  const msg = `site "${where.site}" has spent epsilon ${fmt(spent.epsilon)} (delta ${spent.delta}) on dataset "${dataset}" over ${spent.releases} releases of all its jobs; ${
    outcome.exhaustedBefore
      ? `job "${job}" was stopped here before, `
      : !Number.isFinite(wouldBe)
        ? `this release of job "${job}" cannot be accounted within delta ${spent.delta} (epsilon unbounded: raise the noise multiplier), so it would exceed the budget `
        : `this release of job "${job}" would take it to ${fmt(wouldBe)}, `
  }above the budget ${spent.maxEpsilon}: the site stops contributing to this job`;
  where.audit?.({ action: 'dp_budget_exhausted', job, msg, data: { filter, ...spentJson(spent, dataset), would_be_epsilon: Number.isFinite(wouldBe) ? wouldBe : null } });
  throw new DpError('E_DP_BUDGET_EXHAUSTED', msg);
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(6) : String(x);
}
