import { join } from 'node:path';
import { FlareRuntimeError, parseStrictJson, readFileIfExists, writeFileAtomic } from '@flare/core';
import { z } from 'zod';

// A site remembers, durably and within bounds, the signed jobs it has met: a hostile server that replays a job
// bundle its admin signed once (a finished job, an aborted one, one this site refused) is refused with
// E_POLICY_JOB_REPLAYED. A job the site still runs (it was interrupted when the connection dropped, or the site
// restarted) may be deployed again: that is how a server resumes a job. The signed job's age bounds what must
// be remembered: a job first seen longer after its signing than the site's window is refused anyway
// (checkJobFreshness), so entries older than the window can be forgotten.

/** The file in the site's workspace. */
export const JOB_LEDGER_FILE = 'job-ledger.json';

/** What a site knows of a job id: it runs it (or ran it until the server went away), it ended here, or it refused it. */
type JobLedgerState = 'running' | 'ended' | 'refused';

/** One remembered job. */
export interface JobLedgerEntry {
  readonly state: JobLedgerState;
  /** When its admin signed it (from the verified signature). */
  readonly signed_at: string;
  /** SHA-256 of the signed manifest. */
  readonly manifest: string;
  /** When this site last changed the entry. */
  readonly at: string;
  /** Why it ended or was refused. */
  readonly code?: string | undefined;
}

const Entry = z.strictObject({
  state: z.enum(['running', 'ended', 'refused']),
  signed_at: z.iso.datetime({ precision: 3 }),
  manifest: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.iso.datetime(),
  code: z.string().max(64).optional(),
});
const LedgerFile = z.strictObject({ v: z.literal(1), jobs: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/), Entry) });

/** Options of {@link SiteJobLedger.open}. */
export interface SiteJobLedgerOptions {
  /** The window of `checkJobFreshness`: entries of jobs signed longer ago than this may be forgotten. */
  readonly maxAgeMs: number;
  /** Most entries kept (default 4096): beyond it the oldest ended or refused jobs are forgotten first. */
  readonly maxEntries?: number;
  /** The clock (tests). */
  readonly now?: () => Date;
}

/**
 * The site's memory of the signed jobs it met, in `<workspace>/job-ledger.json` (atomic writes, 0600). Bounded:
 * entries of jobs signed before the age window are dropped (the window refuses those jobs by itself), then the
 * oldest ended or refused ones beyond `maxEntries`.
 */
export class SiteJobLedger {
  readonly #path: string;
  readonly #o: SiteJobLedgerOptions;
  readonly #jobs: Map<string, JobLedgerEntry>;
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string, o: SiteJobLedgerOptions, jobs: Map<string, JobLedgerEntry>) {
    this.#path = path;
    this.#o = o;
    this.#jobs = jobs;
  }

  /**
   * Opens the ledger of `workspace` (an absent file is an empty ledger).
   * @throws FlareRuntimeError E_RUNTIME_WORKSPACE when the file exists but is not a ledger (naming the file).
   */
  static async open(workspace: string, o: SiteJobLedgerOptions): Promise<SiteJobLedger> {
    const path = join(workspace, JOB_LEDGER_FILE);
    const bytes = await readFileIfExists(path, { maxBytes: 16 * 1024 * 1024 });
    const jobs = new Map<string, JobLedgerEntry>();
    if (bytes !== undefined) {
      let parsed: z.output<typeof LedgerFile>;
      try {
        parsed = LedgerFile.parse(parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes)));
      } catch (cause) {
        throw new FlareRuntimeError('E_RUNTIME_WORKSPACE', `${path} is not a job ledger this site wrote: move it away only if you know why it changed (the site would forget which jobs it ran)`, { cause });
      }
      for (const [id, e] of Object.entries(parsed.jobs)) jobs.set(id, e);
    }
    return new SiteJobLedger(path, o, jobs);
  }

  /** What the site knows of job `id`, if anything. */
  get(id: string): JobLedgerEntry | undefined {
    return this.#jobs.get(id);
  }

  /** Number of remembered jobs. */
  get size(): number {
    return this.#jobs.size;
  }

  /** Records job `id` (durably, before it resolves). */
  async record(id: string, entry: Omit<JobLedgerEntry, 'at'>): Promise<void> {
    this.#jobs.delete(id);
    this.#jobs.set(id, { ...entry, at: (this.#o.now?.() ?? new Date()).toISOString() });
    this.#prune();
    await this.#flush();
  }

  /** Marks a job this site ran as ended (no-op for an id it does not know, or one already ended or refused). */
  async end(id: string, code: string): Promise<void> {
    const e = this.#jobs.get(id);
    if (e?.state !== 'running') return;
    await this.record(id, { state: 'ended', signed_at: e.signed_at, manifest: e.manifest, code: code.slice(0, 64) });
  }

  #prune(): void {
    const now = (this.#o.now?.() ?? new Date()).getTime();
    for (const [id, e] of this.#jobs) {
      // Refused by the age window if it came again: nothing to remember. A running job stays (it may resume).
      if (e.state !== 'running' && now - Date.parse(e.signed_at) > this.#o.maxAgeMs) this.#jobs.delete(id);
    }
    const max = this.#o.maxEntries ?? 4096;
    // Insertion order is the order of the last change: the oldest finished entries go first.
    for (const [id, e] of this.#jobs) {
      if (this.#jobs.size <= max) break;
      if (e.state !== 'running') this.#jobs.delete(id);
    }
    for (const id of this.#jobs.keys()) {
      if (this.#jobs.size <= max) break;
      this.#jobs.delete(id);
    }
  }

  #flush(): Promise<void> {
    const snapshot = JSON.stringify({ v: 1, jobs: Object.fromEntries(this.#jobs) });
    // One write at a time, in order: the last one leaves the newest state on disk.
    this.#writing = this.#writing.catch(() => undefined).then(() => writeFileAtomic(this.#path, snapshot, { mode: 0o600 }));
    return this.#writing;
  }
}
