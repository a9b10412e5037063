import { createAggregator } from '@flare/aggregator';
import type { Aggregator } from '@flare/core';
import type { AggregatorFactory } from './job-runner.js';

/** The aggregator of a job that names none. */
export const DEFAULT_AGGREGATOR = { name: 'fedavg' } as const;

/**
 * The job's aggregator from meta.json's `aggregator` (@flare/aggregator's `createAggregator`, which validates
 * it), starting at the job's first round, with a server optimizer's state restored from the checkpoint.
 */
export const defaultAggregator: AggregatorFactory = (definition, env): Aggregator =>
  createAggregator(definition.aggregator ?? DEFAULT_AGGREGATOR, { global: env.global, round: env.round, ...(env.state === undefined ? {} : { optimizerState: env.state }) });
