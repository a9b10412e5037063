/**
 * Signs with the site's identity key (the runtime binds it to the key of the site's startup kit). Used for the
 * site's advertised keys and for the consistency check.
 */
export interface SecAggSigner {
  /** The signature of `message` under the site's identity key. */
  sign(message: Uint8Array): Uint8Array;
}

/** Verifies another site's signature with that site's identity key (the runtime looks it up from its certificate). */
export interface SecAggVerifier {
  /** True when `signature` is `site`'s signature of `message`. Never throws for a bad signature. */
  verify(site: string, message: Uint8Array, signature: Uint8Array): boolean;
}
