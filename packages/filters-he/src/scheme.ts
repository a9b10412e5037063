import { HeError, type AggregationScheme, type FLModel, type JsonValue } from '@flare/core';
import { heAddDiff } from './add-diff.js';
import { HeAggregator } from './aggregator.js';
import type { HeContext } from './context.js';
import { HE_META_KEY, isEncryptedModel } from './envelope.js';
import { heModelStats } from './stats.js';

/**
 * The CKKS aggregation scheme for a server (core's {@link AggregationScheme}): claims encrypted models,
 * aggregates them with an {@link HeAggregator} on `context` and advances the global model with
 * {@link heAddDiff}, so the global model stays encrypted and nothing reads a ciphertext. `context` is the
 * server's (parameters and key-set id, no secret key); the caller keeps and disposes it.
 *
 * @throws HeError E_HE_SECRET_KEY_PRESENT when `context` holds the secret key (a client kit on the server).
 * @example
 * ```ts
 * const he = await loadHeContextFromKit(serverKitDir, 'server');
 * const server = await ServerEngine.start({ ..., schemes: [heAggregationScheme(he)] });
 * ```
 */
export function heAggregationScheme(context: HeContext): AggregationScheme {
  if (context.hasSecretKey) throw new HeError('E_HE_SECRET_KEY_PRESENT', 'the server was given an HE context holding the secret key; start it with the server kit\'s server_context.seal');
  return Object.freeze({
    name: 'ckks',
    claims: (m: FLModel) => isEncryptedModel(m),
    createAggregator: () => new HeAggregator({ context }),
    advance: (global: FLModel, aggregate: FLModel): FLModel => {
      const next = aggregate.kind === 'diff' ? heAddDiff(context, global, aggregate) : aggregate;
      // The envelope is what lets sites decrypt the next global model: keep it, with the caller's other meta.
      return { params: next.params, kind: 'full', meta: { [HE_META_KEY]: next.meta[HE_META_KEY]! } };
    },
    describe: (m: FLModel): Record<string, JsonValue> => {
      const s = heModelStats(m);
      return s === undefined ? {} : { encrypted: true, ciphertexts: s.ciphertexts, ciphertext_bytes: s.ciphertextBytes, encrypted_values: s.encryptedValues, plain_tensors: s.plainTensors };
    },
  });
}
