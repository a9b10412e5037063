import type { Catalog } from '../info.js';

/** Error codes of homomorphic encryption (@flare/filters-he). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const HE_CODES = {
  E_HE_INSECURE_PARAMS: {
    meaning: 'The CKKS parameters give less than 128-bit security: the coefficient modulus is larger than the HomomorphicEncryption.org table allows for this polynomial degree.',
    action: 'Use the defaults (N = 8192, coefficient modulus bits [60, 40, 40, 60], scale 2^40) or a larger poly_modulus_degree, or fewer or smaller coeff_mod_bit_sizes.',
  },
  E_HE_INVALID_PARAMS: {
    meaning: 'The HE parameters are malformed or unsupported (not CKKS, a degree that is not a power of two, primes out of range, or a scale that leaves no room for values).',
    action: 'Fix the HEBuilder args in project.yml (poly_modulus_degree, coeff_mod_bit_sizes, scale_bits, scheme: CKKS); the message names the failing rule.',
  },
  E_HE_CONTEXT_FORMAT: {
    meaning: 'The bytes are not a FLARE-TS HE context, or the context file is corrupted.',
    action: 'Re-provision the kit, or load the client_context.seal / server_context.seal file that provisioning wrote; never edit these files.',
  },
  E_HE_NO_SECRET_KEY: {
    meaning: 'Decryption was asked of a context that holds no secret key (a server context).',
    action: 'Decrypt only at a client site with its client context; the server is meant to be unable to decrypt.',
  },
  E_HE_SECRET_KEY_PRESENT: {
    meaning: 'A context holding the secret key was given to the server side (aggregation), where only the server context belongs.',
    action: 'Give the server the server context (startup/server_context.seal from the server kit); check that no client kit file was copied to the server.',
  },
  E_HE_CONTEXT_MISMATCH: {
    meaning: 'The encrypted model was made under another HE key set (another project or provisioning) than the context used to read it.',
    action: 'Check that every site and the server use kits from the same provisioning of the same project.',
  },
  E_HE_PARAMS_MISMATCH: {
    meaning: 'The encrypted model was made with another CKKS parameter set than the context used to read it.',
    action: 'Use the same HE parameters everywhere: re-provision the sites whose kits were made with other HEBuilder args.',
  },
  E_HE_CIPHERTEXT_INVALID: {
    meaning: 'A ciphertext is malformed: truncated, badly compressed, of the wrong size or level, or holding values outside the modulus; it was refused before reaching the SEAL library.',
    action: 'Treat the sender as broken or hostile; the update is dropped and nothing of it was aggregated.',
  },
  E_HE_CIPHERTEXT_TAMPERED: {
    meaning: 'A ciphertext does not match the SHA-256 digest its envelope records: its bytes changed after encryption.',
    action: 'Treat the update as tampered or corrupted in transit or storage; ask the site to send it again and check the transport.',
  },
  E_HE_ENVELOPE: {
    meaning: 'The HE description in the model meta is missing, malformed, or inconsistent with the tensors the model carries.',
    action: 'Only models produced by he-encrypt or HeAggregator carry a valid envelope; check versions and that nothing rewrote the model meta.',
  },
  E_HE_NOT_ENCRYPTED: {
    meaning: 'A plain (unencrypted) update reached encrypted aggregation, mixing plain and encrypted contributions.',
    action: 'Make every site apply he-encrypt to its task result (privacy.json or job), or run the job without HE.',
  },
  E_HE_LAYOUT_MISMATCH: {
    meaning: 'Encrypted updates do not pack the same tensors (names, shapes, dtypes, selection) or are not of the same kind (full or diff).',
    action: 'All sites must train the same model and encrypt the same tensors: align the he-encrypt tensors setting and model versions across sites.',
  },
  E_HE_ALREADY_ENCRYPTED: {
    meaning: 'he-encrypt was applied to a model that already carries ciphertexts.',
    action: 'Apply he-encrypt once per result: check the filter chains of the site policy and the job for a duplicate.',
  },
  E_HE_UNKNOWN_TENSOR: {
    meaning: 'The tensors to encrypt name a tensor the model does not have.',
    action: 'Fix the he-encrypt tensors list (names are exact) so that nothing meant to be encrypted is sent in plaintext.',
  },
  E_HE_NOTHING_SELECTED: {
    meaning: 'The he-encrypt selection matches no tensor, so nothing would be encrypted.',
    action: 'Fix the tensors list or regular expression, or remove it to encrypt the whole model.',
  },
  E_HE_VALUE_RANGE: {
    meaning: 'A value to encrypt is NaN, infinite, or larger in magnitude than these CKKS parameters can carry through aggregation.',
    action: 'Check training for divergence; leave large counters (e.g. num_batches_tracked) out of the encrypted tensors, or use a larger first coefficient-modulus prime.',
  },
  E_HE_DECRYPT_FAILED: {
    meaning: 'Decryption produced values outside the range any encryption could hold: the ciphertext was not made under this key or was altered.',
    action: 'Check that the model comes from this project\'s server and kits; discard it.',
  },
  E_HE_WEIGHT: {
    meaning: 'An aggregation weight is not a positive finite number.',
    action: 'Check the site\'s aggregation weight and its NUM_STEPS_CURRENT_ROUND meta: both must be positive.',
  },
  E_HE_CAPACITY: {
    meaning: 'The total aggregation weight is too large for these CKKS parameters to aggregate without overflow.',
    action: 'Use the default parameters (two rescaling levels) or fewer, more evenly weighted contributions per round.',
  },
  E_HE_DUPLICATE_UPDATE: {
    meaning: 'A site contributed twice to the same round of encrypted aggregation.',
    action: 'Only the first contribution of a site counts; check the site for retries that resend results.',
  },
  E_HE_ROUND_MISMATCH: {
    meaning: 'An encrypted update belongs to another round than the one being aggregated.',
    action: 'Late results are dropped; check the site\'s clock of rounds and the task timeout.',
  },
  E_HE_NO_UPDATES: {
    meaning: 'An encrypted aggregation result was asked for before any update was accepted.',
    action: 'Wait for at least one site to contribute, or check why every site\'s update was refused.',
  },
  E_HE_SCALE_MISMATCH: {
    meaning: 'Two encrypted models cannot be added: their ciphertexts are at different levels or scales.',
    action: 'Use the default parameters (their aggregates always come back to the same scale) or send full models instead of diffs.',
  },
  E_HE_KIT_MISSING: {
    meaning: 'The startup kit has no HE context file, or the file cannot be read.',
    action: 'Provision the project with the HEBuilder in project.yml (heKitBuilder registered) and use the new kits.',
  },
  E_HE_STATE_MISMATCH: {
    meaning: 'The HE keys kept in the CA state were made with other parameters than project.yml now asks for.',
    action: 'Keep the HEBuilder args unchanged; changing HE parameters needs new keys for every site, which means a new project state.',
  },
  E_HE_ENGINE: {
    meaning: 'The SEAL library failed unexpectedly during an HE operation.',
    action: 'Reset the aggregation round and report the error with its cause; the inputs had passed validation.',
  },
} as const satisfies Catalog;
