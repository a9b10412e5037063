import { AggregatorError, FRAME_MAGIC, MODEL_LIMITS, decodeFrame, encodeFrame, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { AdaptiveNormBoundAggregator } from './adaptive-norm-bound.js';
import { NormBoundAggregator } from './norm-bound.js';
import { ServerOptAggregator } from './server-opt-aggregator.js';
import type { RoundAggregator } from './types.js';

// The cross-round state of a spec-built aggregator, as one FLARE-TS frame: a JSON header naming what is in it
// (the adaptive bound's medians, the server optimizer's name) and, as the payload, the optimizer's own
// saveState() bytes (safetensors). Checked with zod and core's bounded frame decoder when read back.

const FORMAT = 'flare-ts/aggregator-state';

const StateHeader = z.strictObject({
  format: z.literal(FORMAT),
  version: z.literal(1),
  adaptive: z.strictObject({ medianNorm: z.number().min(0), medianSteps: z.number().positive().optional() }).nullable(),
  optimizer: z.enum(['fedavgm', 'fedadagrad', 'fedadam', 'fedyogi']).nullable(),
});

/** The layers of a spec-built aggregator that carry state, outermost first. */
function layers(agg: RoundAggregator): { adaptive?: AdaptiveNormBoundAggregator; optimizer?: ServerOptAggregator } {
  const found: { adaptive?: AdaptiveNormBoundAggregator; optimizer?: ServerOptAggregator } = {};
  let at: RoundAggregator | undefined = agg;
  for (let depth = 0; at !== undefined && depth < 8; depth++) {
    if (at instanceof AdaptiveNormBoundAggregator) {
      found.adaptive ??= at;
      at = at.inner;
    } else if (at instanceof ServerOptAggregator) {
      found.optimizer ??= at;
      at = at.inner;
    } else if (at instanceof NormBoundAggregator) {
      at = at.inner;
    } else {
      at = undefined;
    }
  }
  return found;
}

/**
 * What a spec-built aggregator carries from one round to the next (a server optimizer's moments, the
 * adaptive norm bound's medians), as bytes to store with the round's checkpoint, taken after `result()`;
 * `createAggregator(spec, { global, state })` resumes from it bit for bit. Undefined when the aggregator
 * carries nothing (plain FedAvg, robust aggregators).
 */
export function saveAggregatorState(agg: RoundAggregator): Uint8Array | undefined {
  const { adaptive, optimizer } = layers(agg);
  const history = adaptive?.history;
  if (history === undefined && optimizer === undefined) return undefined;
  const header = {
    format: FORMAT,
    version: 1,
    adaptive: history === undefined ? null : { medianNorm: history.medianNorm, ...(history.medianSteps === undefined ? {} : { medianSteps: history.medianSteps }) },
    optimizer: optimizer === undefined ? null : optimizer.optimizer.name,
  };
  return encodeFrame(header, optimizer === undefined ? new Uint8Array(0) : optimizer.optimizer.saveState());
}

function isFrame(bytes: Uint8Array): boolean {
  return bytes.length >= FRAME_MAGIC.length && FRAME_MAGIC.every((b, i) => bytes[i] === b);
}

/**
 * Restores what {@link saveAggregatorState} saved into a freshly built aggregator (internal: createAggregator
 * calls it). A server optimizer's own saveState() bytes or stateToJSON() value are accepted too.
 *
 * @throws AggregatorError E_AGG_STATE when the state is malformed or does not fit the aggregator.
 */
export function restoreAggregatorState(agg: RoundAggregator, state: Uint8Array | JsonValue): void {
  const { adaptive, optimizer } = layers(agg);
  if (!(state instanceof Uint8Array) || !isFrame(state)) {
    // A server optimizer's own state (safetensors bytes or JSON), as saved before aggregator states existed.
    if (optimizer === undefined) throw new AggregatorError('E_AGG_STATE', 'a server optimizer state was given, but this aggregator has no server optimizer');
    optimizer.optimizer.loadState(state, optimizer.currentGlobal);
    return;
  }
  let frame;
  try {
    frame = decodeFrame(state, StateHeader, { maxBytes: MODEL_LIMITS.maxBytes });
  } catch (cause) {
    throw new AggregatorError('E_AGG_STATE', 'the aggregator state is not a valid flare-ts/aggregator-state frame', { cause });
  }
  const { header, payload } = frame;
  if ((header.optimizer === null) !== (optimizer === undefined) || (optimizer !== undefined && header.optimizer !== optimizer.optimizer.name)) {
    throw new AggregatorError('E_AGG_STATE', `the saved state is of server optimizer ${header.optimizer ?? 'none'}; this aggregator has ${optimizer?.optimizer.name ?? 'none'}`);
  }
  if (header.adaptive !== null && adaptive === undefined) {
    throw new AggregatorError('E_AGG_STATE', 'the saved state has an adaptive norm bound; this aggregator has none');
  }
  if (optimizer !== undefined) optimizer.optimizer.loadState(payload, optimizer.currentGlobal);
  adaptive?.restoreHistory(header.adaptive === null ? undefined : header.adaptive);
}
