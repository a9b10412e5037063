import { createHash } from 'node:crypto';
import { canonicalJson, HeError, type JsonValue } from '@flare/core';
import { z } from 'zod';

/** CKKS parameters (FLARE's HEBuilder args, in camel case). */
export interface HeParams {
  /** Ring dimension N, a power of two; a ciphertext carries N/2 values. */
  readonly polyModulusDegree: number;
  /** Bit sizes of the coefficient-modulus primes: the first, the rescaling primes, then the special prime. */
  readonly coeffModBits: readonly number[];
  /** log2 of the CKKS scale at which values are encoded. */
  readonly scaleBits: number;
}

/**
 * The defaults of this package: N = 8192, primes [60, 40, 40, 60], scale 2^40 (146 bits of the 218 that
 * 128-bit security allows at N = 8192). Two 40-bit rescaling primes let the server apply weights and divide by
 * their total with a rescale each, so aggregates come back to scale 2^40 exactly and can be added across rounds.
 */
export const DEFAULT_HE_PARAMS: HeParams = Object.freeze({
  polyModulusDegree: 8192,
  coeffModBits: Object.freeze([60, 40, 40, 60]),
  scaleBits: 40,
});

/**
 * The largest total coefficient-modulus bit count for 128-bit classical security with a ternary secret, per
 * ring dimension: HomomorphicEncryption.org Security Standard (Albrecht et al., 2018), Table 1, as SEAL encodes
 * it in native/src/seal/util/hestdparms.h (SEAL_HE_STD_PARMS_128_TC). A test checks it against SEAL itself.
 */
export const MAX_COEFF_BITS_128: ReadonlyMap<number, number> = new Map([
  [1024, 27],
  [2048, 54],
  [4096, 109],
  [8192, 218],
  [16384, 438],
  [32768, 881],
]);

/** SEAL accepts primes of at most 60 bits (SEAL_USER_MOD_BIT_COUNT_MAX); we ask at least 20 of every prime. */
const MIN_PRIME_BITS = 20;
const MAX_PRIME_BITS = 60;
/** Rescaling primes also carry the aggregation weights: 30 bits keep each weight to 2^-31 relative precision. */
const MIN_RESCALE_BITS = 30;
/** Bits the first prime must keep above the scale for values (|x| <= 2^(bits - 3), see valueLimit). */
const MIN_HEADROOM_BITS = 10;

/**
 * FLARE's `nvflare.lighter.impl.he.HEBuilder` args as they appear in project.yml (builders[].args). Unknown
 * keys are refused so that a typo cannot silently fall back to a default.
 */
export const HeBuilderArgs = z.strictObject({
  poly_modulus_degree: z.number().int().optional(),
  coeff_mod_bit_sizes: z.array(z.number().int()).max(64).optional(),
  scale_bits: z.number().int().optional(),
  scheme: z.string().max(16).optional(),
});
/** Parsed HEBuilder args. */
export type HeBuilderArgs = z.infer<typeof HeBuilderArgs>;

/**
 * Resolves and validates CKKS parameters: missing fields take {@link DEFAULT_HE_PARAMS}.
 *
 * @throws HeError E_HE_INSECURE_PARAMS when the modulus exceeds the 128-bit table for the degree;
 *   E_HE_INVALID_PARAMS for a degree that is not a power of two in SEAL's range, fewer than three primes,
 *   primes outside [20, 60] bits (rescaling primes below 30), or a scale without 10 bits of headroom.
 * @example
 * ```ts
 * resolveHeParams({ coeffModBits: [60, 40, 40] }); // FLARE's TenSEAL chain, accepted
 * ```
 */
export function resolveHeParams(input: Partial<HeParams> = {}): HeParams {
  const params: HeParams = {
    polyModulusDegree: input.polyModulusDegree ?? DEFAULT_HE_PARAMS.polyModulusDegree,
    coeffModBits: Object.freeze([...(input.coeffModBits ?? DEFAULT_HE_PARAMS.coeffModBits)]),
    scaleBits: input.scaleBits ?? DEFAULT_HE_PARAMS.scaleBits,
  };
  const { polyModulusDegree: n, coeffModBits: bits, scaleBits } = params;
  const invalidParams = (msg: string) => new HeError('E_HE_INVALID_PARAMS', msg);
  const maxBits = MAX_COEFF_BITS_128.get(n);
  if (maxBits === undefined) throw invalidParams(`poly_modulus_degree must be a power of two from 1024 to 32768, got ${n}`);
  if (bits.length < 3) {
    throw invalidParams(`coeff_mod_bit_sizes needs at least 3 primes (first, one rescaling prime, special), got ${bits.length}`);
  }
  for (const b of bits) {
    if (!Number.isInteger(b) || b < MIN_PRIME_BITS || b > MAX_PRIME_BITS) {
      throw invalidParams(`every prime must have ${MIN_PRIME_BITS} to ${MAX_PRIME_BITS} bits, got ${b}`);
    }
  }
  // Security first: whatever else is wrong, a modulus too large for the degree is the finding that matters.
  const total = bits.reduce((a, b) => a + b, 0);
  if (total > maxBits) {
    throw new HeError(
      'E_HE_INSECURE_PARAMS',
      `coefficient modulus of ${total} bits exceeds the ${maxBits} bits that give 128-bit security at N = ${n}`,
    );
  }
  for (const b of bits.slice(1, -1)) {
    if (b < MIN_RESCALE_BITS) throw invalidParams(`rescaling primes need at least ${MIN_RESCALE_BITS} bits, got ${b}`);
  }
  if (!Number.isInteger(scaleBits) || scaleBits < MIN_PRIME_BITS || scaleBits > MAX_PRIME_BITS) {
    throw invalidParams(`scale_bits must be an integer from ${MIN_PRIME_BITS} to ${MAX_PRIME_BITS}, got ${scaleBits}`);
  }
  if (bits[0]! - scaleBits < MIN_HEADROOM_BITS) {
    throw invalidParams(`the first prime (${bits[0]} bits) must exceed scale_bits (${scaleBits}) by at least ${MIN_HEADROOM_BITS} bits`);
  }
  return Object.freeze(params);
}

/**
 * Reads FLARE's HEBuilder args (snake case, as in project.yml); absent fields take `defaults` (by default
 * {@link DEFAULT_HE_PARAMS}; note FLARE's own default chain is [60, 40, 40], ours [60, 40, 40, 60]).
 *
 * @throws HeError E_HE_INVALID_PARAMS for unknown keys, wrong types or a scheme other than CKKS, and every
 *   error of {@link resolveHeParams}.
 * @example
 * ```ts
 * heParamsFromBuilderArgs({ poly_modulus_degree: 8192, coeff_mod_bit_sizes: [60, 40, 40], scale_bits: 40, scheme: 'CKKS' });
 * ```
 */
export function heParamsFromBuilderArgs(args: Readonly<Record<string, JsonValue>> | undefined, defaults: HeParams = DEFAULT_HE_PARAMS): HeParams {
  const parsed = HeBuilderArgs.safeParse(args ?? {});
  if (!parsed.success) {
    throw new HeError('E_HE_INVALID_PARAMS', `HEBuilder args: ${z.prettifyError(parsed.error).replace(/\s+/g, ' ')}`);
  }
  const a = parsed.data;
  if (a.scheme !== undefined && a.scheme.toUpperCase() !== 'CKKS') {
    throw new HeError('E_HE_INVALID_PARAMS', `HEBuilder scheme ${JSON.stringify(a.scheme)} is not supported: only CKKS aggregates real-valued models`);
  }
  const input: { -readonly [K in keyof HeParams]?: HeParams[K] } = { ...defaults };
  if (a.poly_modulus_degree !== undefined) input.polyModulusDegree = a.poly_modulus_degree;
  if (a.coeff_mod_bit_sizes !== undefined) input.coeffModBits = a.coeff_mod_bit_sizes;
  if (a.scale_bits !== undefined) input.scaleBits = a.scale_bits;
  return resolveHeParams(input);
}

/** SHA-256 (hex) of the canonical JSON of the parameters: equal parameters, equal fingerprint. */
export function paramsFingerprint(p: HeParams): string {
  const json = canonicalJson({ scheme: 'ckks', polyModulusDegree: p.polyModulusDegree, coeffModBits: [...p.coeffModBits], scaleBits: p.scaleBits });
  return createHash('sha256').update(json).digest('hex');
}

/** True when both parameter sets are the same. */
export function sameParams(a: HeParams, b: HeParams): boolean {
  return paramsFingerprint(a) === paramsFingerprint(b);
}

/**
 * Largest |value| a site may encrypt: 2^(first prime bits - scale bits - 3), 2^17 with the defaults. The last
 * level holds |v| x 2^scale below half its prime, i.e. |v| < 2^(bits - scale - 1); the two spare bits leave room
 * for a mean plus a global model (heAddDiff) and for telling wrapped-around garbage from values on decryption.
 */
export function valueLimit(p: HeParams): number {
  return 2 ** (p.coeffModBits[0]! - p.scaleBits - 3);
}
