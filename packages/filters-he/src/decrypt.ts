import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { HeError, unflatten, type Filter, type FilterContext, type FLModel, type JsonValue, type Tensor } from '@flare/core';
import { engineOf, type HeContext } from './context.js';
import { HE_META_KEY, isEncryptedModel, openEncryptedModel } from './envelope.js';
import { checkCiphertexts, checkContext } from './validate.js';

/** Options of {@link heDecrypt}. */
export interface HeDecryptOptions {
  /** A client context (with the secret key). */
  readonly context: HeContext;
  /**
   * Refuse plain models (E_HE_NOT_ENCRYPTED) instead of passing them through. Default false: the first
   * global model of a job is plain, as in FLARE's HEModelDecryptor.
   */
  readonly requireEncrypted?: boolean;
}

/** Ciphertexts decrypted between two yields to the event loop. */
const BATCH = 16;

/**
 * A filter for the data a site receives (the global model): checks the envelope against the context
 * (parameters, key set), each ciphertext against its SHA-256 digest and SEAL's exact layout, decrypts, and
 * rebuilds the tensors with their names, shapes and dtypes. Plaintext tensors and other meta pass through;
 * `meta['flare.he']` is removed. The input is not modified.
 *
 * Decrypted values must stay within twice `context.valueLimit`: anything beyond cannot come from an honest
 * encryption or aggregation and means the wrong key or altered data (E_HE_DECRYPT_FAILED).
 *
 * @throws HeError E_HE_NO_SECRET_KEY (server context), E_HE_PARAMS_MISMATCH, E_HE_CONTEXT_MISMATCH,
 *   E_HE_ENVELOPE, E_HE_CIPHERTEXT_TAMPERED, E_HE_CIPHERTEXT_INVALID, E_HE_DECRYPT_FAILED, and
 *   E_HE_NOT_ENCRYPTED for plain models when `requireEncrypted` is set.
 */
export function heDecrypt(options: HeDecryptOptions): Filter {
  const { context, requireEncrypted = false } = options;
  engineOf(context);
  if (!context.hasSecretKey) {
    throw new HeError('E_HE_NO_SECRET_KEY', 'he-decrypt was given a context without a secret key (a server context): it cannot decrypt');
  }
  return {
    name: 'he-decrypt',
    async apply(model: FLModel, ctx: FilterContext): Promise<FLModel> {
      const engine = engineOf(context);
      if (!isEncryptedModel(model)) {
        if (requireEncrypted) throw new HeError('E_HE_NOT_ENCRYPTED', 'a plain model arrived where an encrypted one is required');
        ctx.audit?.({ action: 'he_plain_passthrough', msg: 'the model is not encrypted; passed through unchanged' });
        return model;
      }
      const started = performance.now();
      const opened = openEncryptedModel(model);
      checkContext(opened, context);
      const checked = checkCiphertexts(opened, engine);
      const { envelope } = opened;
      const vector = new Float64Array(envelope.length);
      const bound = 2 * context.valueLimit;
      for (let i = 0; i < checked.length; i++) {
        if (i > 0 && i % BATCH === 0) {
          await yieldToLoop();
          ctx.signal?.throwIfAborted();
          engineOf(context);
        }
        const ct = engine.load(checked[i]!);
        let values: Float64Array;
        try {
          values = engine.decrypt(ct);
        } finally {
          ct.delete();
        }
        const start = i * envelope.slots;
        const n = Math.min(envelope.slots, envelope.length - start);
        for (let j = 0; j < n; j++) {
          const v = values[j]!;
          if (!(Math.abs(v) <= bound)) {
            throw new HeError('E_HE_DECRYPT_FAILED', `ciphertext ${i} decrypts to values outside ±${bound}: not made under this key, or altered`);
          }
        }
        vector.set(values.subarray(0, n), start);
      }
      const decrypted = unflatten(vector, { kind: model.kind, length: envelope.length, entries: envelope.entries });
      const params = new Map<string, Tensor>(opened.plain);
      for (const [name, t] of decrypted.params) params.set(name, t);
      const meta: Record<string, JsonValue> = { ...model.meta };
      delete meta[HE_META_KEY];
      const out: FLModel = { params, kind: model.kind, meta };
      if (model.metrics !== undefined) out.metrics = { ...model.metrics };
      ctx.audit?.({
        action: 'he_decrypted',
        msg: `decrypted ${checked.length} ciphertexts (${envelope.length} values)`,
        data: { ciphertexts: checked.length, values: envelope.length, ms: Math.round(performance.now() - started) },
      });
      return out;
    },
  };
}
