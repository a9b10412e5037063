import { HeError } from '@flare/core';
import type { HeContext } from './context.js';
import { verifyDigests, type OpenedModel } from './envelope.js';
import type { CkksEngine } from './seal/engine.js';
import { checkCiphertext, type CheckedCiphertext } from './seal/wire.js';

// The checks every reader of an encrypted model runs, cheapest first, before any byte reaches SEAL.

/** Refuses a model made under other parameters (E_HE_PARAMS_MISMATCH) or another key set (E_HE_CONTEXT_MISMATCH). */
export function checkContext(opened: OpenedModel, context: HeContext): void {
  const e = opened.envelope;
  if (e.params !== context.fingerprint || e.slots !== context.slots) {
    throw new HeError('E_HE_PARAMS_MISMATCH', `the model was encrypted with CKKS parameters ${e.params.slice(0, 12)}..., this context has ${context.fingerprint.slice(0, 12)}...`);
  }
  if (e.context !== context.id) {
    throw new HeError('E_HE_CONTEXT_MISMATCH', `the model was encrypted under HE context ${e.context}, this is context ${context.id}`);
  }
}

/** Verifies digests (E_HE_CIPHERTEXT_TAMPERED), then the layout of every ciphertext (E_HE_CIPHERTEXT_INVALID). */
export function checkCiphertexts(opened: OpenedModel, engine: CkksEngine): CheckedCiphertext[] {
  verifyDigests(opened);
  return opened.ciphertexts.map((bytes, i) => {
    try {
      return checkCiphertext(bytes, engine.shape);
    } catch (e) {
      if (e instanceof HeError) throw new HeError(e.code, `ciphertext ${i}: ${e.message}`, { cause: e });
      throw e;
    }
  });
}
