import { z } from 'zod';

/**
 * The training fields every built-in tfjs learner takes in its job args (the spam learner of the poc and the
 * tabular learner on a site's own data): one definition, spread into each learner's own schema.
 */
export const TRAINING_ARGS = {
  batch_size: z.int().min(1).max(65_536).default(32),
  optimizer: z.enum(['sgd', 'adam', 'rmsprop', 'adagrad']).default('adam'),
  learning_rate: z.number().positive().max(10).default(0.01),
  /** Record-level DP: train with DP-SGD (the site's dp-sgd accountant checks and charges what was run). */
  dp_sgd: z
    .strictObject({
      noise_multiplier: z.number().positive().finite(),
      clip_norm: z.number().positive().finite(),
      sampling_rate: z.number().gt(0).lte(1),
    })
    .optional(),
} as const;
