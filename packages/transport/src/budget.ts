/**
 * Memory for messages in progress, shared by an endpoint's connections: a streamed message reserves its
 * declared length when it starts and gives it back when it is delivered or abandoned. A message that does not
 * fit waits, first come first served, with its connection's reading paused (the sender's TCP window fills and
 * its send waits): a few peers announcing huge messages can slow the others down, never exhaust the server.
 * With one connection per participant (@flare/auth) each peer holds at most one message, `maxMessageBytes`.
 */
export class ReceiveBudget {
  #used = 0;
  readonly #waiting: Array<{ readonly bytes: number; readonly grant: () => void }> = [];

  constructor(readonly total: number) {}

  /** Bytes reserved by messages in progress. */
  get used(): number {
    return this.#used;
  }

  /** Reserves `bytes` now if they fit and nobody waits before; false otherwise. */
  take(bytes: number): boolean {
    if (this.#waiting.length > 0 || this.#used + bytes > this.total) return false;
    this.#used += bytes;
    return true;
  }

  /**
   * Calls `grant` (never synchronously) once `bytes` are reserved for the caller, who gives them back; returns
   * a function that cancels the wait if it has not been granted yet.
   */
  wait(bytes: number, grant: () => void): () => void {
    const entry = { bytes, grant };
    this.#waiting.push(entry);
    queueMicrotask(() => this.#drain());
    return () => {
      const at = this.#waiting.indexOf(entry);
      if (at < 0) return;
      this.#waiting.splice(at, 1);
      queueMicrotask(() => this.#drain());
    };
  }

  give(bytes: number): void {
    if (bytes === 0) return;
    this.#used -= bytes;
    this.#drain();
  }

  #drain(): void {
    while (this.#waiting.length > 0 && this.#used + this.#waiting[0]!.bytes <= this.total) {
      const next = this.#waiting.shift()!;
      this.#used += next.bytes;
      // Not from inside another connection's frame handling: the waiter resumes reading on its own turn.
      queueMicrotask(next.grant);
    }
  }
}
