/**
 * Paces a fan-out to many sites: at most `batch` sends per turn of the event loop. Sending a job or a task to
 * thousands of sites in one synchronous sweep (seal, frame, TLS write for each) held the server's event loop for
 * tens of seconds at 5,000 sites, so nothing else was read meanwhile: pings and heartbeats went unanswered and
 * connections were dropped as idle. Between batches the loop reads its sockets.
 */
export class Pacer {
  readonly #batch: number;
  readonly #waiting: Array<() => void> = [];
  #scheduled = false;

  constructor(batch = 32) {
    if (!Number.isSafeInteger(batch) || batch < 1) throw new RangeError(`"batch" expected a positive integer, got ${batch}`);
    this.#batch = batch;
  }

  /** Resolves at the caller's turn: callers go in the order they asked, `batch` per turn of the event loop. */
  turn(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#release());
      }
    });
  }

  #release(): void {
    for (const go of this.#waiting.splice(0, this.#batch)) go();
    if (this.#waiting.length > 0) setImmediate(() => this.#release());
    else this.#scheduled = false;
  }
}
