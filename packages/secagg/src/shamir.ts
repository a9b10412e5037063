import { randomBytes } from 'node:crypto';

// Shamir secret sharing (Shamir, "How to share a secret", CACM 1979) over the prime field GF(p). The protocol
// uses p = 2^255 - 19 (the Curve25519 field prime, RFC 7748 §4.1): every secret is a uniform field element,
// encoded as 32 little-endian bytes. The functions take the prime as a parameter so that the published example
// over p = 1613 (tests) runs through the same code. Internal to @flare/secagg.

/** p = 2^255 - 19. */
export const SHARE_PRIME = (1n << 255n) - 19n;
/** Bytes of one field element on the wire. */
export const FIELD_BYTES = 32;

/** One share: the holder's evaluation point x (1..65535 here) and f(x). */
export interface Share {
  readonly x: number;
  readonly y: bigint;
}

/** ((a mod p) + p) mod p. */
function mod(a: bigint, p: bigint): bigint {
  const r = a % p;
  return r < 0n ? r + p : r;
}

/** a^-1 mod p by the extended Euclidean algorithm; `a` must be non-zero mod p (p prime). */
export function invert(a: bigint, p: bigint): bigint {
  let [r0, r1] = [mod(a, p), p];
  let [s0, s1] = [1n, 0n];
  if (r0 === 0n) throw new RangeError('0 has no inverse');
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, p);
}

/** A uniform element of [0, p) from the CSPRNG, by rejection (no modulo bias). */
export function randomFieldElement(p: bigint = SHARE_PRIME): bigint {
  const bits = p.toString(2).length;
  const bytes = Math.ceil(bits / 8);
  const topMask = (1 << (bits - 8 * (bytes - 1))) - 1;
  // For 2^255 - 19 a draw is rejected with probability 19 / 2^255: the loop runs once in practice.
  for (let i = 0; i < 1000; i++) {
    const raw = randomBytes(bytes);
    raw[bytes - 1]! &= topMask;
    const v = fromLittleEndian(raw);
    if (v < p) return v;
  }
  throw new Error('the random source returned only values above the field prime: it is broken');
}

/**
 * Splits `secret` into shares for the evaluation points `xs` (distinct, non-zero), any `threshold` of which
 * reconstruct it: f(x) = secret + a_1 x + ... + a_{t-1} x^{t-1} with uniform coefficients, f evaluated by Horner.
 */
export function split(secret: bigint, threshold: number, xs: readonly number[], p: bigint = SHARE_PRIME, coefficients?: readonly bigint[]): Share[] {
  if (!(Number.isInteger(threshold) && threshold >= 1 && threshold <= xs.length)) {
    throw new RangeError(`"threshold" expected an integer in [1, ${xs.length}], got ${threshold}`);
  }
  if (secret < 0n || secret >= p) throw new RangeError('"secret" must be a field element');
  checkPoints(xs, p);
  const coeffs = coefficients ?? Array.from({ length: threshold - 1 }, () => randomFieldElement(p));
  if (coeffs.length !== threshold - 1) throw new RangeError(`expected ${threshold - 1} coefficients, got ${coeffs.length}`);
  return xs.map((x) => {
    const bx = BigInt(x);
    let y = 0n;
    for (let i = coeffs.length - 1; i >= 0; i--) y = (y + coeffs[i]!) * bx % p;
    return { x, y: (y + secret) % p };
  });
}

/**
 * The secret f(0) from `shares` by Lagrange interpolation at 0, with one field inversion for all of them
 * (Montgomery's trick). Uses every share given: pass exactly the threshold (more interpolate a polynomial of
 * higher degree, which gives the secret only if all of them lie on the sharing polynomial).
 */
export function combine(shares: readonly Share[], p: bigint = SHARE_PRIME): bigint {
  if (shares.length === 0) throw new RangeError('no shares to combine');
  checkPoints(shares.map((s) => s.x), p);
  const xs = shares.map((s) => BigInt(s.x));
  // λ_i = Π_{j≠i} x_j / (x_j - x_i): numerators and denominators first, then one inversion.
  const num: bigint[] = [];
  const den: bigint[] = [];
  for (let i = 0; i < xs.length; i++) {
    let n = 1n;
    let d = 1n;
    for (let j = 0; j < xs.length; j++) {
      if (j === i) continue;
      n = (n * xs[j]!) % p;
      d = (d * mod(xs[j]! - xs[i]!, p)) % p;
    }
    num.push(n);
    den.push(d);
  }
  const inv = invertAll(den, p);
  let secret = 0n;
  for (let i = 0; i < xs.length; i++) secret = (secret + shares[i]!.y * num[i]! % p * inv[i]!) % p;
  return secret;
}

function invertAll(values: readonly bigint[], p: bigint): bigint[] {
  const prefix: bigint[] = [];
  let acc = 1n;
  for (const v of values) {
    prefix.push(acc);
    acc = (acc * v) % p;
  }
  let inv = invert(acc, p);
  const out = new Array<bigint>(values.length);
  for (let i = values.length - 1; i >= 0; i--) {
    out[i] = (inv * prefix[i]!) % p;
    inv = (inv * values[i]!) % p;
  }
  return out;
}

function checkPoints(xs: readonly number[], p: bigint): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!(Number.isSafeInteger(x) && x > 0 && BigInt(x) < p)) throw new RangeError(`evaluation point ${x} is not in [1, p)`);
    if (seen.has(x)) throw new RangeError(`evaluation point ${x} repeats`);
    seen.add(x);
  }
}

/** 32 little-endian bytes of a field element. */
export function fieldToBytes(v: bigint): Uint8Array {
  const out = new Uint8Array(FIELD_BYTES);
  let x = v;
  for (let i = 0; i < FIELD_BYTES; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** The field element in 32 little-endian bytes, or undefined when the bytes encode a value >= p. */
export function fieldFromBytes(bytes: Uint8Array, p: bigint = SHARE_PRIME): bigint | undefined {
  if (bytes.length !== FIELD_BYTES) return undefined;
  const v = fromLittleEndian(bytes);
  return v < p ? v : undefined;
}

function fromLittleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}
