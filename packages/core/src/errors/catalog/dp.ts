import type { Catalog } from '../info.js';

/** Error codes of differential-privacy filters and budgets (@flare/filters-dp). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const DP_CODES = {
  E_DP_BUDGET_EXHAUSTED: {
    meaning: 'Releasing this update would take the privacy spent on this job at this site above the budget (maximum epsilon) that the site\'s privacy policy sets, so the site stops contributing to the job.',
    action: 'Nothing is wrong at the site: the job has used its privacy budget here; finish the job without this site, or have the site\'s data owner decide whether a new job with its own budget is acceptable.',
  },
  E_DP_BUDGET_CORRUPT: {
    meaning: 'The site\'s privacy ledger (or a budget record of an earlier version) cannot be read or fails validation (an edited line, a chain whose spending goes down), so the site refuses to contribute rather than assume that nothing was spent.',
    action: 'Restore the record under the site workspace\'s dp-budget folder from a backup, or have the site\'s data owner decide; never delete it to reset the spending.',
  },
  E_DP_LEDGER_ROLLBACK: {
    meaning: 'A privacy ledger (the spending of one of the site\'s datasets, across jobs) is missing, older than, or different from the head the site\'s audit log recorded: it was deleted, restored from an older copy, or rewritten. Nothing is released until it is restored.',
    action: 'Restore the ledger file named in the message (dp-budget folder of the site workspace) from the latest backup; never delete it to reset the spending. Check the site\'s audit log for who changed it.',
  },
  E_DP_BUDGET_WRITE: {
    meaning: 'The privacy spent could not be recorded in the site\'s budget store, so the update was not released.',
    action: 'Check free space and permissions of the site workspace\'s dp-budget folder, then run the task again.',
  },
  E_DP_MODEL_KIND: {
    meaning: 'A differential-privacy filter received a model of a kind it cannot protect (gaussian-dp clips and noises weight differences, kind diff, not full weights).',
    action: 'Place the filter where the learner\'s result is a weight difference (task_result_filters), or have the learner return a diff.',
  },
  E_DP_UNSUPPORTED_DTYPE: {
    meaning: 'The update holds an integer or boolean tensor that the filter cannot noise; releasing it unprotected would bypass differential privacy.',
    action: 'Remove such tensors with the exclude-vars filter before this filter, or store them as floats.',
  },
  E_DP_NON_FINITE: {
    meaning: 'The update contains NaN or infinite values, so its norm cannot be bounded and it cannot be released with a privacy guarantee.',
    action: 'Fix the local training that diverged (lower the learning rate, check the data), then run the task again.',
  },
  E_DP_BAD_META: {
    meaning: 'The update\'s NUM_STEPS_CURRENT_ROUND meta is not a positive finite number, so the filter cannot scale the update as FLARE does.',
    action: 'Have the learner report the number of local steps as a positive number, or leave the meta out (it then counts as 1).',
  },
  E_DP_SVT_STALLED: {
    meaning: 'The sparse-vector filter could not select the requested fraction of values within its bound on passes, because almost no noisy value reaches the threshold.',
    action: 'Lower tau or raise gamma in the svt-privacy arguments, or lower the fraction of values to share.',
  },
  E_DP_UNREACHABLE_EPSILON: {
    meaning: 'No noise multiplier up to the search limit (1e6) reaches the requested epsilon for this sampling rate, number of steps and delta.',
    action: 'Ask for a larger epsilon or delta, fewer steps or a smaller sampling rate.',
  },
  E_DP_ABORTED: {
    meaning: 'The task was cancelled while a privacy filter was running; nothing was released.',
    action: 'No action is needed unless the cancellation was unexpected; the job\'s owner can run the task again.',
  },
  E_DP_SGD_MISSING: {
    meaning: 'The site\'s privacy scope demands record-level differential privacy (DP-SGD), but the update does not report having been trained with DP-SGD (no dp_sgd meta).',
    action: 'Run the job with a learner that trains with DP-SGD (for example @flare/tfjs with dpSgd settings in the job\'s learner arguments); the update was not sent.',
  },
  E_DP_SGD_WEAK: {
    meaning: 'The update was trained with DP-SGD settings weaker than this site\'s privacy scope allows (a smaller noise multiplier or a larger sampling rate).',
    action: 'Raise the noise multiplier or lower the sampling rate in the job\'s learner arguments to what the site requires; the update was not sent.',
  },
} as const satisfies Catalog;
