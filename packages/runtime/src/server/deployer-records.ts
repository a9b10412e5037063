import type { JobRecord } from './job-store.js';

/** The part of the job store a {@link RecordBatcher} writes through. */
export interface RecordWriter {
  update(id: string, change: (r: JobRecord) => void): Promise<unknown>;
}

interface Batch {
  readonly changes: Array<(r: JobRecord) => void>;
  readonly written: Promise<void>;
}

/**
 * Group commit of changes to a job's record: a deploy to a thousand sites changes the record a thousand
 * times, and rewriting it for each (read, validate, write, fsync) costs N² bytes on disk and minutes at that
 * scale. Changes that arrive while a write is in flight are applied together in the next one, so there are
 * at most two writes per job at any time (one in flight, one gathering). Each change's promise settles when
 * the write that contains it is durable, and rejects with that write's error: nothing is acknowledged before
 * it is on disk, nothing is dropped silently.
 */
export class RecordBatcher {
  readonly #store: RecordWriter;
  /** The batch of each job still gathering changes (its write has not started). */
  readonly #gathering = new Map<string, Batch>();
  /** The last write of each job (settled or not), which the next batch waits for. */
  readonly #last = new Map<string, Promise<void>>();

  constructor(store: RecordWriter) {
    this.#store = store;
  }

  /** Applies `change` to job `id`'s record in the next write; resolves once that write is durable. */
  apply(id: string, change: (r: JobRecord) => void): Promise<void> {
    let batch = this.#gathering.get(id);
    if (batch === undefined) {
      const changes: Array<(r: JobRecord) => void> = [];
      const previous = this.#last.get(id) ?? Promise.resolve();
      const written = previous.then(async () => {
        // From here on, new changes gather in the next batch.
        this.#gathering.delete(id);
        await this.#store.update(id, (r) => {
          for (const c of changes) c(r);
        });
      });
      batch = { changes, written };
      this.#gathering.set(id, batch);
      const settled = written.catch(() => undefined);
      this.#last.set(id, settled);
      // Forget the job once nothing is queued behind this write: the map holds only jobs with writes in flight.
      void settled.then(() => {
        if (this.#last.get(id) === settled) this.#last.delete(id);
      });
    }
    batch.changes.push(change);
    return batch.written;
  }
}
