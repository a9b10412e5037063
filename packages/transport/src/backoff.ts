import { randomInt } from 'node:crypto';

/** Reconnect timing: exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015). */
export interface BackoffOptions {
  /** First delay ceiling (default 500 ms). */
  readonly initialMs?: number;
  /** Largest delay ceiling (default 30 s). */
  readonly maxMs?: number;
  /** Growth per failed attempt (default 2). */
  readonly factor?: number;
}

/** A uniform random number in [0, 1); injectable so tests are deterministic. */
export type RandomSource = () => number;

/** The CSPRNG-backed default random source (lint forbids Math.random in library code). */
export const cryptoRandom: RandomSource = () => randomInt(0, 2 ** 47) / 2 ** 47;

/**
 * The delay before reconnect attempt `attempt` (0-based): uniform in [0, min(maxMs, initialMs * factor^attempt)].
 * Full jitter spreads a crowd of clients that lost the same server, so they do not return in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: RandomSource = cryptoRandom): number {
  const { initialMs = 500, maxMs = 30_000, factor = 2 } = options;
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`"attempt" expected a non-negative integer, got ${attempt}`);
  const ceiling = Math.min(maxMs, initialMs * factor ** Math.min(attempt, 64));
  return Math.floor(random() * ceiling);
}
