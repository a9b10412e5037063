/**
 * Remembers login nonces for as long as a login carrying them could still be fresh (the skew window), so a
 * replayed login is refused. Bounded: when full, the oldest entries are forgotten first. (A forgotten nonce can
 * only let a replayed login reach the signature check again; without the client's ephemeral private key the
 * replay can never complete a session.)
 */
export class NonceCache {
  readonly #seen = new Map<string, number>();

  /** @param ttlMs how long a nonce is remembered; @param maxEntries the memory bound. */
  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 100_000,
  ) {
    if (!(ttlMs > 0)) throw new RangeError(`"ttlMs" expected a positive number, got ${ttlMs}`);
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`"maxEntries" expected a positive integer, got ${maxEntries}`);
  }

  /** Records `nonce` at time `now`; false when it was already recorded and has not expired (a replay). */
  add(nonce: string, now: number): boolean {
    this.#prune(now);
    if (this.#seen.has(nonce)) return false;
    if (this.#seen.size >= this.maxEntries) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(nonce, now + this.ttlMs);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }

  #prune(now: number): void {
    // Insertion order is expiry order (constant ttl, clock assumed monotone enough): stop at the first live one.
    for (const [nonce, expires] of this.#seen) {
      if (expires > now) break;
      this.#seen.delete(nonce);
    }
  }
}
