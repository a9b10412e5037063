import type { Identity, JsonValue } from '@flare/core';
import type { JobDefinition } from '../protocol/job-definition.js';
import { namedSites, type ActiveJob } from './active-job.js';
import type { SiteRegistry } from './registry.js';

/** A job waiting to start (SUBMITTED, or RUNNING at a restart), as the scheduler keeps it in memory. */
export interface QueuedJob {
  readonly id: string;
  readonly definition: JobDefinition;
  readonly raw: JsonValue;
  readonly submitter: Identity;
  readonly submittedAt: string;
  /** True when the job was RUNNING when the server stopped (it resumes from its checkpoint). */
  readonly resuming: boolean;
}

/** What the scheduler needs from the server. */
export interface SchedulerOptions {
  readonly registry: SiteRegistry;
  /** Jobs running now, by id. */
  readonly active: ReadonlyMap<string, ActiveJob>;
  /** Most jobs running at once. */
  readonly maxRunning: number;
  /** How long a job waits for every site it names before it starts with those present. */
  readonly deployWaitMs: number;
  /** Sites refused for good (attestation): not waited for. */
  readonly refusedForGood: (site: string) => boolean;
  /** Starts a job with the sites present (the scheduler forgets it). */
  readonly start: (job: QueuedJob, present: readonly string[]) => void;
  readonly now?: () => number;
}

/**
 * The server's queue: an in-memory index of the jobs that wait to start (filled once from the job store at
 * start, then by submissions), so a tick costs nothing on disk. A job starts when a running slot is free and
 * every site it names is connected with room for one more job (the `max_jobs` it reported), or, after
 * `deployWaitMs`, with the sites that are (at least `min_clients`). Jobs that cannot start yet do not hold up
 * those behind them.
 */
export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #queue = new Map<string, QueuedJob>();
  readonly #since = new Map<string, number>();
  readonly #now: () => number;

  constructor(o: SchedulerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Queues a job (oldest first). */
  add(job: QueuedJob): void {
    this.#queue.set(job.id, job);
    const sorted = [...this.#queue.values()].sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    this.#queue.clear();
    for (const j of sorted) this.#queue.set(j.id, j);
  }

  /** Drops a queued job (aborted before it started); true when it was queued. */
  remove(id: string): boolean {
    this.#since.delete(id);
    return this.#queue.delete(id);
  }

  /** Queued job ids, oldest first. */
  queued(): string[] {
    return [...this.#queue.keys()];
  }

  /** Jobs running at each site now (deployed or being deployed). */
  #load(): Map<string, number> {
    const load = new Map<string, number>();
    for (const a of this.#o.active.values()) for (const s of new Set([...a.deployed, ...a.deploying])) load.set(s, (load.get(s) ?? 0) + 1);
    return load;
  }

  /** Starts every queued job that can start now. */
  tick(): void {
    const { registry, active } = this.#o;
    // Nothing waits, or no slot is free: the load per site (a pass over every site of every running job) is not
    // needed. The server ticks at every registration and every second; at 5,000 sites that pass was 1% of its CPU.
    if (this.#queue.size === 0 || active.size >= this.#o.maxRunning) return;
    const load = this.#load();
    const hasRoom = (site: string): boolean => {
      const entry = registry.get(site);
      if (entry === undefined) return false;
      const max = entry.resources['max_jobs'];
      return max === undefined || (load.get(site) ?? 0) < max;
    };
    for (const job of [...this.#queue.values()]) {
      if (active.size >= this.#o.maxRunning) return;
      const def = job.definition;
      const named = namedSites(def, () => registry.names());
      const present = named.filter(hasRoom);
      const since = this.#since.get(job.id) ?? this.#now();
      this.#since.set(job.id, since);
      const waited = this.#now() - since >= this.#o.deployWaitMs;
      // A site refused for good will not come back by waiting: do not wait for it.
      const expected = named.filter((s) => registry.get(s) !== undefined || !this.#o.refusedForGood(s)).length;
      const ready = named.length > 0 && (present.length === named.length || (present.length === expected && present.length >= def.min_clients) || (waited && present.length >= def.min_clients));
      if (!ready) continue;
      this.remove(job.id);
      for (const s of present) load.set(s, (load.get(s) ?? 0) + 1);
      this.#o.start(job, present);
    }
  }
}
