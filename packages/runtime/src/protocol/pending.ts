import type { FlareError } from '@flare/core';

interface Entry<T, O> {
  readonly owner: O;
  readonly timer: NodeJS.Timeout | undefined;
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
  readonly cleanup: () => void;
}

/** How {@link PendingRequests.open} waits. */
export interface WaitOptions {
  /** Reject with `onTimeout()` after this long (no timer when omitted). */
  readonly timeoutMs?: number;
  /** The error a timeout rejects with. */
  readonly onTimeout?: () => FlareError;
  /** Reject with the signal's reason when it aborts (a job aborted, the engine closing). */
  readonly signal?: AbortSignal;
}

/**
 * The one table of requests that wait for a peer's answer (task results, deploy replies, admin replies,
 * attestation evidence): each request has an id, an owner (the peer it was sent to), an optional timeout and
 * an optional abort signal. An answer is accepted only from the owner it was sent to; a peer that goes away
 * fails everything it owed at once ({@link rejectOwnedBy}), so nobody waits for a timeout that cannot be met.
 *
 * @example
 * ```ts
 * const pending = new PendingRequests<{ readonly ok: boolean }, string>();
 * const reply = pending.open(id, 'site-1', { timeoutMs: 60_000, onTimeout: () => new FlareRuntimeError('E_RUNTIME_TIMEOUT', '...') });
 * await channel.send({ t: 'deploy', id, ... });
 * // on message: pending.settle(id, 'site-1', reply)
 * ```
 */
export class PendingRequests<T, O = string> {
  readonly #entries = new Map<string, Entry<T, O>>();

  /** Requests still waiting. */
  get size(): number {
    return this.#entries.size;
  }

  /** Starts waiting for the answer to request `id`, sent to `owner`. @throws RangeError when `id` is already waiting. */
  open(id: string, owner: O, options: WaitOptions = {}): Promise<T> {
    if (this.#entries.has(id)) throw new RangeError(`request "${id}" is already waiting`);
    return new Promise<T>((resolve, reject) => {
      const { timeoutMs, onTimeout, signal } = options;
      if (signal?.aborted === true) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => void this.reject(id, signal?.reason);
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => void this.reject(id, onTimeout?.() ?? new RangeError(`request "${id}" timed out`)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#entries.set(id, { owner, timer, resolve, reject, cleanup });
    });
  }

  /** The owner request `id` was sent to, when it still waits. */
  ownerOf(id: string): O | undefined {
    return this.#entries.get(id)?.owner;
  }

  /** Delivers `value` to request `id` if it waits for an answer from `from`; false otherwise (late, unknown or from someone else). */
  settle(id: string, from: O, value: T): boolean {
    const e = this.#entries.get(id);
    if (e === undefined || e.owner !== from) return false;
    this.#entries.delete(id);
    e.cleanup();
    e.resolve(value);
    return true;
  }

  /** Fails request `id` with `error`; false when it no longer waits. */
  reject(id: string, error: unknown): boolean {
    const e = this.#entries.get(id);
    if (e === undefined) return false;
    this.#entries.delete(id);
    e.cleanup();
    e.reject(error);
    return true;
  }

  /** Fails every request sent to `owner` (it disconnected); returns how many. */
  rejectOwnedBy(owner: O, error: unknown): number {
    let n = 0;
    for (const [id, e] of [...this.#entries]) if (e.owner === owner && this.reject(id, error)) n++;
    return n;
  }

  /** Fails every waiting request (shutdown). */
  rejectAll(error: unknown): void {
    for (const id of [...this.#entries.keys()]) this.reject(id, error);
  }
}
