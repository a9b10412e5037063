// @flare/filters-dp: differential-privacy filters (Gaussian, percentile, SVT, exclude) with RDP accounting and
// budgets that each site enforces. Flat named exports only.

export { gaussianDp, GAUSSIAN_DP_META } from './gaussian-dp.js';
export type { GaussianDpBudget, GaussianDpOptions } from './gaussian-dp.js';
export { nextClipNorm } from './adaptive-clipping.js';
export type { AdaptiveClipping, ClipNormStep } from './adaptive-clipping.js';
export { percentilePrivacy } from './percentile-privacy.js';
export type { PercentilePrivacyOptions } from './percentile-privacy.js';
export { svtPrivacy, SVT_ACCOUNTANT_META, SVT_BUDGET_META, SVT_MAX_PASSES } from './svt-privacy.js';
export type { SvtPrivacyOptions } from './svt-privacy.js';
export { excludeVars, MAX_EXCLUDE_PATTERN } from './exclude-vars.js';
export { dpSgdAccountant, DP_SGD_META } from './dp-sgd-accountant.js';
export type { DpSgdAccountantOptions } from './dp-sgd-accountant.js';
export { gaussianMechanism } from './gaussian-mechanism.js';
export type { GaussianNoise } from './gaussian-mechanism.js';
export type { ExcludeVarsOptions } from './exclude-vars.js';

export { DEFAULT_ORDERS, epsilonFromRdp, noiseMultiplierFor, rdp, rdpEpsilon } from './rdp.js';
export type { EpsilonAtOrder, NoiseCalibration, RdpConversion, RdpEpsilonOptions, RdpOptions } from './rdp.js';
export { prvEpsilon } from './prv.js';
export type { PrvEpsilon, PrvOptions } from './prv.js';

export { BUDGET_ORDERS, DP_SPENT_META, chargeRelease, privacySpent } from './budget.js';
export type { ChargeResult, PrivacyBudget, PrivacySpent, ReleaseCost } from './budget.js';
export { DEFAULT_DATASET, LEDGER_HEAD_ACTION, LEDGER_ROLLBACK_ACTION, ledgerHeadsFromAudit, openPrivacyLedger } from './privacy-ledger.js';
export type { LedgerEntry, LedgerHead, LedgerJobState, LedgerTotals, LedgerView, PrivacyLedger, PrivacyLedgerOptions } from './privacy-ledger.js';
export { metricsPrivacy, METRICS_PRIVACY_META } from './metrics-privacy.js';
export type { MetricNoise, MetricsPrivacyOptions } from './metrics-privacy.js';
export { cryptoRandomSource } from './random-source.js';
export type { DpRandomSource } from './random-source.js';

export {
  BUDGET_FOLDER,
  createDpFilterFactories,
  dpFilterFactories,
  dpSgdFactory,
  excludeVarsFactory,
  FLARE_FILTER_ALIASES,
  gaussianDpFactory,
  metricsPrivacyFactory,
  percentilePrivacyFactory,
  svtPrivacyFactory,
} from './filter-factories.js';
export type { DpFilterFactoriesOptions, DpSgdArgs, ExcludeVarsArgs, GaussianDpArgs, MetricsPrivacyArgs, PercentilePrivacyArgs, SvtPrivacyArgs } from './filter-factories.js';
