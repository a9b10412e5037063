import type { Catalog } from '../info.js';

/** Error codes of aggregation (@flare/aggregator). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AGGREGATOR_CODES = {
  E_AGG_ROUND: {
    meaning: 'A contribution is for another round than the one being aggregated, or does not say which round it is for.',
    action: 'Late results of an earlier round are dropped on purpose; check that the site runs the current task and that its clock of rounds is not stale.',
  },
  E_AGG_DUPLICATE: {
    meaning: 'A site sent a second contribution in the same round; only its first one counts.',
    action: 'Check the site for retries that resend a result already accepted; one site may contribute once per round.',
  },
  E_AGG_KIND: {
    meaning: 'A contribution is of the wrong kind (full weights where weight differences are expected, or the reverse).',
    action: 'Make the learner return the kind the job expects (kind "diff" or "full" in the aggregator arguments).',
  },
  E_AGG_WEIGHT: {
    meaning: 'A contribution\'s aggregation weight or NUM_STEPS_CURRENT_ROUND is not a finite positive number, or exceeds the configured cap.',
    action: 'Fix the aggregation weight in the job or the step count the learner reports; leave a site out instead of giving it weight 0.',
  },
  E_AGG_NONFINITE: {
    meaning: 'A contribution holds NaN or infinite values, or its values overflow when weighted.',
    action: 'The site\'s training diverged or the site is faulty: inspect its logs; the contribution was refused and the aggregate is unchanged.',
  },
  E_AGG_LATE: {
    meaning: 'A contribution arrived after the round had been aggregated.',
    action: 'Contributions must arrive before the round is closed; raise the round timeout if honest sites are too slow.',
  },
  E_AGG_EMPTY: {
    meaning: 'The round was aggregated with no accepted contribution (or a tensor received no weight).',
    action: 'Wait for at least one valid contribution before aggregating; check why the sites\' results were refused.',
  },
  E_AGG_ASSUMPTION: {
    meaning: 'There are too few contributions for the robust aggregator as configured (Krum needs n >= 2f + 3, Bulyan n >= 4f + 3, trimmed mean must keep a value).',
    action: 'Lower f (the number of faulty sites to tolerate), lower the trimming, or wait for more sites before aggregating.',
  },
  E_AGG_SPEC: {
    meaning: 'The aggregator named in a job definition is unknown or its arguments are invalid.',
    action: 'Use one of the names and arguments listed in @flare/aggregator\'s README; the message names the first invalid field.',
  },
  E_AGG_STATE: {
    meaning: 'A server optimizer checkpoint is malformed, belongs to another optimizer, or does not match the model.',
    action: 'Restore the checkpoint that was saved with this job and model; start the optimizer afresh if it is lost.',
  },
} as const satisfies Catalog;
