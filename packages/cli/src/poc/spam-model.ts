import type { JsonValue } from '@flare/core';
import { gaussianMechanism } from '@flare/filters-dp';
import type { LearnerFactory } from '@flare/runtime';
import { TfjsLearner, denseNetwork } from '@flare/tfjs';
import { z } from 'zod';
import { TRAINING_ARGS } from '../learner-args.js';
import type { SiteData } from './dataset.js';

/** The poc's network: hashed bag-of-words -> `hidden` ReLU units -> one sigmoid (hidden 0: logistic regression). */
export function spamNetwork(features: number, hidden: number): ReturnType<typeof denseNetwork> {
  return denseNetwork(
    features,
    hidden > 0
      ? [
          { name: 'hidden', units: hidden, activation: 'relu' },
          { name: 'out', units: 1, activation: 'sigmoid' },
        ]
      : [{ name: 'out', units: 1, activation: 'sigmoid' }],
  );
}

/** The job arguments of the `tfjs-spam` learner. */
export const SpamLearnerArgs = z.strictObject({
  features: z.int().min(1).max(1 << 20),
  hidden: z.int().min(0).max(4096).default(16),
  epochs: z.int().min(1).max(100).default(1),
  ...TRAINING_ARGS,
});

/**
 * The `tfjs-spam` learner a poc site registers: a {@link TfjsLearner} on this site's own data (loaded by the
 * site, never named by the job). The job chooses only the network size and the training settings.
 */
export function spamLearnerFactory(data: () => SiteData): LearnerFactory<unknown> {
  return {
    name: 'tfjs-spam',
    args: SpamLearnerArgs as unknown as z.ZodType<unknown>,
    create: (raw) => {
      const a = raw as z.output<typeof SpamLearnerArgs>;
      const d = data();
      if (a.features !== d.features) throw new RangeError(`the job's network takes ${a.features} features, this site's data has ${d.features}`);
      return new TfjsLearner({
        build: () => spamNetwork(a.features, a.hidden),
        train: { x: d.train.x, y: d.train.y, features: d.features },
        validation: { x: d.test.x, y: d.test.y, features: d.features },
        epochs: a.epochs,
        batchSize: a.batch_size,
        optimizer: { name: a.optimizer, learningRate: a.learning_rate },
        // The noise comes from the site's own CSPRNG-backed mechanism, never from the job.
        ...(a.dp_sgd === undefined
          ? {}
          : { dpSgd: { clipNorm: a.dp_sgd.clip_norm, noiseMultiplier: a.dp_sgd.noise_multiplier, samplingRate: a.dp_sgd.sampling_rate, noise: gaussianMechanism() } }),
      });
    },
  };
}

/** The job definition the poc submits. */
export function spamJob(o: {
  /** meta.json `workflow` (default scatter_and_gather). */
  readonly workflow?: string;
  readonly sites: readonly string[];
  readonly rounds: number;
  readonly features: number;
  readonly hidden: number;
  readonly dp: boolean;
  /** Learner arguments that replace the defaults (e.g. DP-SGD settings). */
  readonly learner?: { readonly [k: string]: JsonValue };
}): Record<string, JsonValue> {
  return {
    // The default workflow is left out, so the poc's job folder stays the plain FedAvg job the docs start from.
    ...(o.workflow === undefined || o.workflow === 'scatter_and_gather' ? { name: 'spam-fedavg' } : { name: `spam-${o.workflow.replaceAll('_', '-')}`, workflow: o.workflow }),
    rounds: o.rounds,
    min_clients: Math.max(1, o.sites.length - 1),
    round_timeout_s: 120,
    retries: 1,
    deploy: [...o.sites],
    learner: { name: 'tfjs-spam', args: { features: o.features, hidden: o.hidden, epochs: 1, batch_size: 32, optimizer: 'adam', learning_rate: 0.01, ...o.learner } },
    scope: o.dp ? 'private' : 'public',
  };
}
